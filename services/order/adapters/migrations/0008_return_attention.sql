-- A received return whose participants did not answer after the last attempt needs a person
-- (services/order/domain/returns.py chase): why, shown by GET /returns/{id}.
ALTER TABLE returns ADD COLUMN IF NOT EXISTS attention text;
