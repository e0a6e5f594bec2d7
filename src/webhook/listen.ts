/**
 * Starts a server listening and resolves with its address. A failure (port in use, …) rejects
 * with a ListenError naming the server, so the command line can say which flag to change.
 */
import type { AddressInfo, Server } from "node:net";
import { ListenError } from "../errors.ts";

export async function listen(
  server: Server,
  port: number,
  host: string,
  name: ListenError["server"],
): Promise<AddressInfo> {
  await new Promise<void>((resolve, reject) => {
    const fail = (error: unknown) => reject(new ListenError(name, host, port, error));
    server.once("error", fail);
    server.listen(port, host, () => {
      server.off("error", fail);
      resolve();
    });
  });
  return server.address() as AddressInfo;
}
