import type { CommandContext } from '../context.js';
import { listAllStreams } from '../kinesis.js';
import { toJson } from '../output.js';

/** `shardline list`: every stream name, one per line, or a JSON array with --json. */
export async function listCommand(ctx: CommandContext): Promise<number> {
  const names = await listAllStreams(ctx.client(), ctx.signal);
  if (ctx.globals.json === true) await ctx.out(`${toJson(names)}\n`);
  else if (names.length > 0) await ctx.out(`${names.join('\n')}\n`);
  return 0;
}
