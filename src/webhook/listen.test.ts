import assert from "node:assert/strict";
import net from "node:net";
import { describe, it } from "node:test";
import { ListenError } from "../errors.ts";
import { listen } from "./listen.ts";

describe("listen", () => {
  it("resolves with the address the OS chose", async () => {
    const server = net.createServer();
    try {
      const address = await listen(server, 0, "127.0.0.1", "metrics");
      assert.equal(address.address, "127.0.0.1");
      assert.ok(address.port > 0);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it("rejects with a ListenError naming the server, its address and the reason in words", async () => {
    const blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(0, "127.0.0.1", resolve));
    const busy = (blocker.address() as net.AddressInfo).port;
    try {
      const error = await listen(net.createServer(), busy, "127.0.0.1", "webhook").then(
        () => assert.fail("listened on a port in use"),
        (rejected: unknown) => rejected,
      );
      assert.ok(error instanceof ListenError);
      assert.equal(
        error.message,
        `the webhook server cannot listen on 127.0.0.1:${busy}: address already in use`,
      );
      assert.deepEqual(
        [error.server, error.host, error.port, error.code],
        ["webhook", "127.0.0.1", busy, "EADDRINUSE"],
      );
      assert.equal((error.cause as { code?: string }).code, "EADDRINUSE", "keeps Node's error");
    } finally {
      await new Promise((resolve) => blocker.close(resolve));
    }
  });

  it("says an address is not on this machine", async () => {
    // 192.0.2.1 is TEST-NET-1 (RFC 5737): never a local address.
    await assert.rejects(listen(net.createServer(), 0, "192.0.2.1", "metrics"), {
      name: "ListenError",
      code: "EADDRNOTAVAIL",
      reason: "address not available on this machine",
    });
  });

  it("falls back to the message of an error without a known code", () => {
    const error = new ListenError("metrics", "::1", 8080, new Error("something else"));
    assert.equal(error.code, undefined);
    assert.equal(error.reason, "something else");
  });
});
