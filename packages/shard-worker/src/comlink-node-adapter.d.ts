// comlink 4.4.2 ships `node-adapter.d.ts` beside `node-adapter.mjs`; NodeNext resolution looks for
// `node-adapter.d.mts`, so the ESM adapter needs this declaration (same signature as the shipped one).
declare module 'comlink/dist/esm/node-adapter.mjs' {
  import type { Endpoint } from 'comlink';
  export interface NodeEndpoint {
    // biome-ignore lint/suspicious/noExplicitAny: as shipped; a MessagePort must be assignable
    postMessage(message: any, transfer?: any[]): void;
    // biome-ignore lint/suspicious/noExplicitAny: as shipped
    on(type: string, listener: (value: any) => void): void;
    // biome-ignore lint/suspicious/noExplicitAny: as shipped
    off(type: string, listener: (value: any) => void): void;
    start?: () => void;
  }
  export default function nodeEndpoint(nep: NodeEndpoint): Endpoint;
}
