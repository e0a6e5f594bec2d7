/**
 * The HTTPS server the API server calls: routes, limits, timing, graceful shutdown.
 *
 * Handlers are plain functions from an AdmissionRequest to a review; this module owns the
 * HTTP concerns: content type, body limits (413), bodies in flight (429), bad JSON or envelope (400), unknown path
 * (404), method (405), and a last-resort catch so no request can crash the process.
 */

import { createServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import type { SecureContextOptions } from "node:tls";
import { type AdmissionRequest, type AdmissionReview, decodeReview } from "../admission/review.ts";
import { errorMessage } from "../errors.ts";
import type { IncomingMessage, ServerResponse } from "../platform/node-http.ts";
import { componentLogger, type Logger } from "../telemetry/logger.ts";
import type { AdmissionOutcome, Metrics } from "../telemetry/metrics.ts";
import { BodyBudget, HttpError, MAX_BODY_BYTES, MAX_IN_FLIGHT_BODY_BYTES, readJson } from "./body.ts";
import { listen } from "./listen.ts";

export interface HandlerResult {
  review: AdmissionReview;
  outcome: AdmissionOutcome;
}

/** A handler answers at once, or (registry checks) when its checks are done; never rejects. */
export type AdmissionHandler = (request: AdmissionRequest) => HandlerResult | Promise<HandlerResult>;

export interface WebhookServerOptions {
  tls: SecureContextOptions;
  /** Path (`/mutate`, `/validate`) to handler. */
  handlers: Record<string, AdmissionHandler>;
  metrics: Metrics;
  logger: Logger;
  maxBodyBytes?: number;
  /** OpenSSL cipher list, `:`-separated (TLS 1.3 suites included); default `DEFAULT_CIPHERS`. */
  ciphers?: string;
  /** Bytes of request bodies buffered or parsed at once, across requests (429 over it). */
  maxInFlightBodyBytes?: number;
}

/**
 * Timeouts: the API server gives a webhook at most 30 s (ImageShift's configuration uses
 * far less) and keeps connections alive between calls; idle connections are kept longer
 * than its own idle timeout would close them, so it is the one to close them.
 */
const REQUEST_TIMEOUT_MS = 30_000;

/**
 * AEAD suites only, as Go's crypto/tls (and so the API server) prefers: ECDHE with AES-GCM or
 * ChaCha20-Poly1305 for TLS 1.2, no CBC (SHA-1 or SHA-2) and no RSA key exchange; TLS 1.3's
 * suites are all AEAD. `imageshift serve --tls-cipher-suites` replaces the list.
 */
export const DEFAULT_CIPHERS = [
  "TLS_AES_128_GCM_SHA256",
  "TLS_AES_256_GCM_SHA384",
  "TLS_CHACHA20_POLY1305_SHA256",
  "ECDHE-ECDSA-AES128-GCM-SHA256",
  "ECDHE-RSA-AES128-GCM-SHA256",
  "ECDHE-ECDSA-AES256-GCM-SHA384",
  "ECDHE-RSA-AES256-GCM-SHA384",
  "ECDHE-ECDSA-CHACHA20-POLY1305",
  "ECDHE-RSA-CHACHA20-POLY1305",
].join(":");
const KEEP_ALIVE_TIMEOUT_MS = 95_000;

function send(
  response: ServerResponse,
  status: number,
  body: unknown,
  close = false,
  headers: Record<string, string> = {},
): void {
  const text = JSON.stringify(body);
  response.writeHead(status, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(text),
    ...headers,
    ...(close ? { connection: "close" } : {}),
  });
  response.end(text);
}

/** `a`, `a or b`, `a, b or c`. */
function either(paths: string[]): string {
  return paths.length < 2 ? paths.join("") : `${paths.slice(0, -1).join(", ")} or ${paths.at(-1)}`;
}

export class WebhookServer {
  readonly server: Server;
  private readonly options: WebhookServerOptions;
  private closing = false;
  private readonly bodies: BodyBudget;

  constructor(options: WebhookServerOptions) {
    this.options = { ...options, logger: componentLogger(options.logger, "webhook") };
    this.bodies = new BodyBudget(options.maxInFlightBodyBytes ?? MAX_IN_FLIGHT_BODY_BYTES);
    options.metrics.servingCertificate(options.tls.cert);
    this.server = createServer(this.tlsOptions(options.tls), (request, response) => {
      void this.handle(request, response);
    });
    this.server.requestTimeout = REQUEST_TIMEOUT_MS;
    this.server.keepAliveTimeout = KEEP_ALIVE_TIMEOUT_MS;
    this.server.headersTimeout = REQUEST_TIMEOUT_MS;
  }

  /** Swaps the serving certificate; new connections use it, open ones keep theirs. */
  setCertificate(tls: SecureContextOptions): void {
    this.server.setSecureContext(this.tlsOptions(tls));
    this.options.metrics.servingCertificate(tls.cert);
  }

  private tlsOptions(tls: SecureContextOptions): SecureContextOptions {
    return {
      ...tls,
      minVersion: "TLSv1.2",
      ciphers: this.options.ciphers ?? DEFAULT_CIPHERS,
      honorCipherOrder: true,
    };
  }

  listen(port: number, host: string): Promise<AddressInfo> {
    return listen(this.server, port, host, "webhook");
  }

  /**
   * Keeps accepting and serving, but every response from now on carries `connection: close`:
   * the API server opens a new connection for each call, so its calls follow the endpoint
   * list as this pod leaves it, instead of reusing a connection to a pod about to close.
   */
  drain(): void {
    this.closing = true;
  }

  /** Stops accepting, lets requests in flight finish, then closes what is left after `graceMs`. */
  async close(graceMs: number): Promise<void> {
    // Responses from now on carry `connection: close`, so keep-alive connections end
    // with the request in flight instead of idling until the grace period runs out.
    this.drain();
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeIdleConnections();
    const timer = setTimeout(() => this.server.closeAllConnections(), graceMs);
    await closed;
    clearTimeout(timer);
  }

  private async handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const { handlers, metrics, logger } = this.options;
    const path = (request.url ?? "").split("?")[0] ?? "";
    const handler = handlers[path];
    const started = process.hrtime.bigint();
    const lease = this.bodies.lease();
    metrics.admissionInFlight.inc();
    try {
      if (!handler)
        throw new HttpError(
          404,
          `no webhook at ${JSON.stringify(path)}; use ${either(Object.keys(handlers))}`,
        );
      if (request.method !== "POST")
        throw new HttpError(405, `method ${request.method} is not allowed; use POST`);
      const decoded = decodeReview(
        await readJson(request, this.options.maxBodyBytes ?? MAX_BODY_BYTES, lease),
      );
      if (!decoded.ok) throw new HttpError(400, `not an AdmissionReview: ${decoded.error}`);
      const { review, outcome } = await handler(decoded.request);
      send(response, 200, review, this.closing);
      metrics.admissionRequests.inc({
        webhook: path.slice(1),
        operation: decoded.request.operation ?? "",
        outcome,
      });
    } catch (error) {
      if ((error as { code?: string }).code === "ECONNRESET") {
        // The client went away mid-request (an API server timeout, say): nothing to answer.
        metrics.errors.inc({ kind: "client_aborted" });
        logger.debug({ path, err: error }, "client closed the connection mid-request");
        return;
      }
      const status = error instanceof HttpError ? error.status : 500;
      const message = error instanceof HttpError ? error.message : `internal error: ${errorMessage(error)}`;
      metrics.errors.inc({ kind: status === 500 ? "internal" : "bad_request" });
      metrics.admissionRequests.inc({
        webhook: handler ? path.slice(1) : "unknown",
        operation: "",
        outcome: "invalid",
      });
      logger.warn({ path, status, err: message }, "request refused");
      // A 413 closes the connection rather than read the rest of a body too large. A 429
      // keeps it: its body has been read and dropped (never buffered).
      const close = status === 413 || this.closing;
      if (!response.headersSent)
        send(response, status, { error: message, status }, close, (error as HttpError).headers);
      else response.destroy();
    } finally {
      metrics.admissionInFlight.dec();
      lease.release();
      if (handler)
        metrics.admissionDuration.observe(
          { webhook: path.slice(1) },
          Number(process.hrtime.bigint() - started) / 1e9,
        );
    }
  }
}
