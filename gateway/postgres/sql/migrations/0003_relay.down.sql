DROP TABLE dead_letters;
DROP TABLE relay_instances;
DROP TABLE relay_positions;
