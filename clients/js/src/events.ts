/**
 * A small typed event emitter: `on` answers its own unsubscribe, and a handler that throws is
 * reported on the console and does not stop the others, nor the client.
 */
export class Emitter<Events extends { [name: string]: unknown }> {
  private handlers: { [K in keyof Events]?: Set<(value: Events[K]) => void> } = {};

  on<K extends keyof Events>(name: K, handler: (value: Events[K]) => void): () => void {
    const set = (this.handlers[name] ??= new Set());
    set.add(handler);
    return () => {
      set.delete(handler);
    };
  }

  emit<K extends keyof Events>(name: K, value: Events[K]): void {
    for (const handler of [...(this.handlers[name] ?? [])]) {
      try {
        handler(value);
      } catch (error) {
        console.error(`dispatcher client: a "${String(name)}" handler threw`, error);
      }
    }
  }
}
