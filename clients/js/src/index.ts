export { MasterClient, type MasterClientOptions, type MasterClientEvents } from "./master.js";
export { ServiceClient, ApiError, type ServiceClientOptions, type EventStreamOptions } from "./service.js";
export { Offer, type Outcome, type EndReason } from "./offer.js";
export {
  DispatcherError,
  type ConnectionState,
  type ConnectionOptions,
  type WebSocketConstructor,
  type WebSocketLike,
} from "./connection.js";
export { verifyWebhook } from "./webhook.js";
export * from "./protocol.js";
