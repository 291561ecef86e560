/** Public helpers about a queue's tags, for a runtime that watches a queue's records. */
import type { Tag } from "../index.js";
import { parseQueueName, queueTags } from "./ids.js";
import { intIn } from "./ids.js";
import { SHARDS_MAX } from "./limits.js";

/**
 * The tag every record of shard `shard` of queue `name` carries: a blocking read of it
 * (`readNextBlocking`) wakes up on each push, pop or ack of the shard.
 */
export function queueShardTag(name: string, shard: number): Tag {
  return queueTags(parseQueueName(name)).shard(intIn(shard, 0, SHARDS_MAX - 1, "shard"));
}
