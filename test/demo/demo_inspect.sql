-- Eight channels of the demo district get RTSP stream addresses on the
-- local test cameras: clean pictures, a black screen, a camera turned away
-- from its baseline later, one that stalls and one that refuses.  A plan
-- inspects them every 30 minutes, with a looser profile at night.
WITH pick AS (
    SELECT code, row_number() OVER (ORDER BY code) AS n
      FROM vms.channel WHERE civil_code LIKE '11010501%' ORDER BY code LIMIT 8)
UPDATE vms.channel c
   SET stream_url = :'cam' || '/' || (ARRAY['street', 'street', 'street', 'turned', 'black', 'black', 'stall', 'refuse'])[p.n]
  FROM pick p WHERE c.code = p.code;
DELETE FROM vms.inspection_plan WHERE name = '建外街道巡检';
SELECT vms.inspection_plan_add('建外街道巡检',
    jsonb_build_object('channels', (SELECT jsonb_agg(code::text) FROM vms.channel WHERE stream_url LIKE :'cam' || '%')),
    'every 30 min',
    '{"timeout_ms": 6000, "concurrency": 2,
      "checks": ["stream", "signal_loss", "black_screen", "brightness", "blur", "noise", "freeze", "jitter", "scene_change"],
      "windows": [{"from": "22:00", "to": "06:00", "profile": "loose"}]}');
