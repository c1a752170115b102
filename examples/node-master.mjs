// A master app for Node in 30 lines: node examples/node-master.mjs
// DISPATCHER_URL (ws://127.0.0.1:8080/ws) and MASTER_TOKEN (`dispatcher token --role master
// --sub 5 --master-id 3`) name the server and the master. It accepts offers from "Lenina".
import WebSocket from "ws";
import { MasterClient } from "@dispatcher/client";

const url = process.env.DISPATCHER_URL ?? "ws://127.0.0.1:8080/ws";
const client = new MasterClient({
  url,
  WebSocket, // Node: the token goes in the Authorization header
  getToken: async () => process.env.MASTER_TOKEN, // a real app asks its backend here
  pollUrl: url.replace(/^ws/, "http").replace(/\/ws$/, "/api/v1/masters/me/assignments"),
});

client.on("state", (state) => console.log(`[${state}]`));
client.on("error", (error) => console.log(`error ${error.code}: ${error.message}`));
client.on("offer", async (offer) => {
  console.log(`offer ${offer.id}: ${offer.address}, ${offer.deviceType}, ${offer.problem}; ${Math.round(offer.remainingMs() / 1000)} s left`);
  if (!offer.address.startsWith("Lenina")) return; // left to expire
  console.log(`offer ${offer.id}: ${await offer.accept()}`);
});
client.on("offerEnded", ({ offer, reason }) => console.log(`offer ${offer.id} ended: ${reason}`));
client.on("orderStatus", (update) => console.log(`order ${update.orderId} is ${update.status}`));
client.on("push", (push) => console.log("push", push));

client.connect();
process.on("SIGINT", () => {
  client.close();
  process.exit(0);
});
