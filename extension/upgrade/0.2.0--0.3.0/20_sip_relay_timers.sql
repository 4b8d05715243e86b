-- SIP relay timers: vms._sip_upstream_bye's comment names every way a
-- relayed call ends, as the worker audits them (fresh install:
-- extension/sql/25_cascade.sql).
COMMENT ON FUNCTION vms._sip_upstream_bye(text, text, text, text, text, text) IS
    'internal: a relayed call of an upper platform ended: audited with who or what ended it (ended_by: upstream, device, cancel, timeout, dropped, disabled, no ack)';
