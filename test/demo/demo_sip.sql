-- 200 NVRs that a field team registered in the ledger, each with its own
-- password (stored as digest HA1 only); test/sim/gbsim plays them.
SET vms.ledger_writer = 'system';
INSERT INTO vms.device (code, name, civil_code)
SELECT ('1101050000118' || lpad(i::text, 7, '0'))::vms.gbcode, '朝阳接入NVR-' || i, '110105'
  FROM generate_series(1, 200) i
ON CONFLICT (code) DO NOTHING;
RESET vms.ledger_writer;
SELECT count(vms.device_set_password(code, 'demo-pw', '1101050000'))
  FROM vms.device WHERE code::text LIKE '110105000011800%';
