DROP TABLE shard_moves;
