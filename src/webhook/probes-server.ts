/**
 * Plain-HTTP health and metrics on their own port (`--metrics-port`), so kubelet probes and
 * Prometheus need no webhook certificate: `/healthz` (the process is alive), `/readyz` (a
 * rule set is loaded and the server is not shutting down), `/metrics`.
 */

import type { AddressInfo } from "node:net";
import type { Server } from "../platform/node-http.ts";
import { http } from "../platform/node-http.ts";
import type { Metrics } from "../telemetry/metrics.ts";
import { listen } from "./listen.ts";

export interface Readiness {
  /** undefined when ready, else why not. */
  notReadyReason(): string | undefined;
}

export class ProbesServer {
  readonly server: Server;

  constructor(metrics: Metrics, readiness: Readiness) {
    this.server = http.createServer((request, response) => {
      const path = (request.url ?? "").split("?")[0];
      const text = (status: number, body: string, type = "text/plain; charset=utf-8") => {
        response.writeHead(status, { "content-type": type });
        response.end(body);
      };
      if (path === "/healthz") return text(200, "ok\n");
      if (path === "/readyz") {
        const reason = readiness.notReadyReason();
        return reason === undefined ? text(200, "ok\n") : text(503, `not ready: ${reason}\n`);
      }
      if (path === "/metrics") {
        metrics.registry.metrics().then(
          (body) => text(200, body, metrics.registry.contentType),
          (error: unknown) => text(500, `metrics failed: ${String(error)}\n`),
        );
        return;
      }
      text(404, "not found: use /healthz, /readyz or /metrics\n");
    });
    this.server.keepAliveTimeout = 65_000;
  }

  listen(port: number, host: string): Promise<AddressInfo> {
    return listen(this.server, port, host, "metrics");
  }

  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeAllConnections();
    await closed;
  }
}
