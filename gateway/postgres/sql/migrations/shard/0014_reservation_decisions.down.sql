DROP TABLE IF EXISTS reservation_decisions;
