DROP TABLE masters;
DROP TABLE assignments;
DROP TABLE orders;
