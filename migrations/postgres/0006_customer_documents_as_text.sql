-- A customer's document is written by the service and read back whole; the
-- database never looks inside it. As jsonb it was parsed on every write and
-- rendered on every read: 200,000 documents of 360 bytes took 1.2-1.4 s
-- longer to COPY into jsonb than into text, and 0.8-1.5 s longer to read
-- back. As text it is stored as serde wrote it, the way SQLite keeps it.
-- Documents converted here keep jsonb's rendering, which reads compact
-- (src/store/rows.rs).
ALTER TABLE customers ALTER COLUMN doc TYPE TEXT USING doc::text;
