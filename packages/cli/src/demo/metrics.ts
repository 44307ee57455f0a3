/**
 * `shardline demo --metrics-port P`: GET /metrics serves the run's Prometheus metrics. One process: the
 * demo's own registry. With --hosts: the parent's registry and every host's, aggregated by prom-client
 * (each host's series carry a `host` label, so they stay apart).
 */
import { createServer, type Server } from 'node:http';
import { AggregatorRegistry, Gauge, type Registry } from 'prom-client';

/** Where the metrics come from: the local registry, plus the hosts' `getMetricsAsJSON()` arrays. */
export interface MetricsSource {
  registry: Registry;
  hosts?: () => Promise<object[][]>;
}

async function render(source: MetricsSource): Promise<{ contentType: string; body: string }> {
  const hosts = source.hosts === undefined ? [] : await source.hosts();
  if (hosts.length === 0)
    return { contentType: source.registry.contentType, body: await source.registry.metrics() };
  const merged = AggregatorRegistry.aggregate([await source.registry.getMetricsAsJSON(), ...hosts]);
  return { contentType: merged.contentType, body: await merged.metrics() };
}

/** Listens on 127.0.0.1:port; rejects when the port cannot be bound (e.g. EADDRINUSE). */
export async function serveMetrics(port: number, source: MetricsSource): Promise<Server> {
  const server = createServer((request, response) => {
    const path = (request.url ?? '/').split('?')[0];
    if (request.method !== 'GET' || path !== '/metrics') {
      response.writeHead(404, { 'content-type': 'text/plain' }).end('not found: GET /metrics\n');
      return;
    }
    render(source).then(
      ({ contentType, body }) => {
        response.writeHead(200, { 'content-type': contentType }).end(body);
      },
      (error: unknown) => {
        response.writeHead(500, { 'content-type': 'text/plain' }).end(`${(error as Error).message}\n`);
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  return server;
}

/** Closes the server and its open connections. */
export function closeMetrics(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

/** The demo's own gauges, so /metrics shows the run even before the library's metrics. */
export function demoGauges(
  registry: Registry,
  read: () => { produced: number; unique: number; duplicates: number },
): void {
  const gauges: Array<[string, string, (v: ReturnType<typeof read>) => number]> = [
    ['shardline_demo_produced_records', 'Records the demo producer got acknowledged', (v) => v.produced],
    ['shardline_demo_consumed_records', 'Distinct records the demo consumers delivered', (v) => v.unique],
    [
      'shardline_demo_duplicate_records',
      'Redeliveries (at-least-once) seen by the demo',
      (v) => v.duplicates,
    ],
  ];
  for (const [name, help, pick] of gauges) {
    new Gauge({
      name,
      help,
      registers: [registry],
      collect() {
        this.set(pick(read()));
      },
    });
  }
}
