DROP TABLE IF EXISTS inventory_reservations;
DROP TABLE IF EXISTS customer_directory;
