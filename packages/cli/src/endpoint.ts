/** The check of an endpoint URL (no dependency: `--endpoint` is parsed before anything loads). */

/**
 * Why `value` is not an endpoint URL (http:// or https://), or undefined when it is one. Callers show
 * the whole value beside it: `localhost:4567` parses as a URL of scheme `localhost:`, so the parsed
 * URL would show only part of it.
 */
export function endpointProblem(value: string): string | undefined {
  const hint = /^[a-z0-9.-]+:[0-9]+$/i.test(value) ? `: did you mean http://${value} ?` : '';
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return `must be a URL such as http://127.0.0.1:4567${hint}`;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    return `must be an http:// or https:// URL${hint}`;
  }
  return undefined;
}
