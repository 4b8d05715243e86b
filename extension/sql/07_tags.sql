-- Tags (标签): categories, hierarchical tags, channel assignments with provenance.

CREATE TABLE vms.tag_category (
    code          text PRIMARY KEY CHECK (code ~ '^[a-z][a-z0-9_]*$'),
    name          text NOT NULL,
    hierarchical  boolean NOT NULL DEFAULT false
);
INSERT INTO vms.tag_category VALUES
    ('scenario', '应用场景', true),
    ('responsible_unit', '责任单位', true),
    ('place_type', '场所类型', false),
    ('capability', '能力', false),
    ('custom', '自定义', true);
COMMENT ON TABLE vms.tag_category IS 'tag categories: application scenario, responsible unit, place type, capability, custom';

CREATE TABLE vms.tag (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    category   text NOT NULL REFERENCES vms.tag_category (code),
    name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    parent_id  bigint REFERENCES vms.tag (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (category, name)
);
CREATE INDEX tag_parent_idx ON vms.tag (parent_id);
CREATE INDEX tag_name_idx ON vms.tag (name);
COMMENT ON TABLE vms.tag IS 'tags; a tag in a hierarchical category may have a parent in the same category';

CREATE FUNCTION vms._tag_check_parent() RETURNS trigger
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF NEW.parent_id IS NOT NULL THEN
        IF NOT (SELECT hierarchical FROM vms.tag_category WHERE code = NEW.category) THEN
            RAISE EXCEPTION 'tag category "%" is not hierarchical', NEW.category
                USING ERRCODE = 'check_violation', HINT = 'Leave parent_id empty for tags of this category.';
        END IF;
        IF (SELECT category FROM vms.tag WHERE id = NEW.parent_id) IS DISTINCT FROM NEW.category THEN
            RAISE EXCEPTION 'parent tag % is not in category "%"', NEW.parent_id, NEW.category
                USING ERRCODE = 'check_violation';
        END IF;
        IF NEW.id IS NOT NULL AND NEW.id IN (SELECT vms.tag_subtree(NEW.id)) AND NEW.parent_id IN (SELECT vms.tag_subtree(NEW.id)) THEN
            RAISE EXCEPTION 'tag % cannot be placed under its own descendant %', NEW.id, NEW.parent_id
                USING ERRCODE = 'check_violation';
        END IF;
    END IF;
    RETURN NEW;
END $$;
COMMENT ON FUNCTION vms._tag_check_parent() IS 'internal: parents only in hierarchical categories, same category, no cycles';

CREATE TABLE vms.channel_tag (
    channel_code  vms.gbcode NOT NULL REFERENCES vms.channel (code) ON DELETE CASCADE,
    tag_id        bigint NOT NULL REFERENCES vms.tag (id) ON DELETE CASCADE,
    source        text NOT NULL DEFAULT 'manual' CHECK (source IN ('manual', 'rule', 'import')),
    assigned_by   text NOT NULL DEFAULT session_user,
    assigned_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (channel_code, tag_id)
);
CREATE INDEX channel_tag_tag_idx ON vms.channel_tag (tag_id, channel_code);
COMMENT ON TABLE vms.channel_tag IS 'tags on channels with provenance: who, when, by hand / by rule / by import';

-- A tag and every tag below it.
CREATE FUNCTION vms.tag_subtree(root bigint) RETURNS SETOF bigint
    LANGUAGE sql STABLE STRICT PARALLEL SAFE SET search_path FROM CURRENT AS $$
    WITH RECURSIVE t(id) AS (
        SELECT id FROM vms.tag WHERE id = root
        UNION
        SELECT g.id FROM vms.tag g JOIN t ON g.parent_id = t.id
    )
    SELECT id FROM t
$$;
COMMENT ON FUNCTION vms.tag_subtree(bigint) IS 'ids of a tag and all tags below it';

CREATE TRIGGER tag_check_parent BEFORE INSERT OR UPDATE ON vms.tag
    FOR EACH ROW EXECUTE FUNCTION vms._tag_check_parent();

-- Tag references in filters: an id, a name, or "category:name".
CREATE FUNCTION vms.tag_resolve(ref jsonb) RETURNS bigint
    LANGUAGE plpgsql STABLE SET search_path FROM CURRENT AS $$
DECLARE
    ids bigint[];
    s text;
BEGIN
    IF jsonb_typeof(ref) = 'number' THEN
        SELECT array_agg(id) INTO ids FROM vms.tag WHERE id = (ref #>> '{}')::numeric;
    ELSIF jsonb_typeof(ref) = 'string' THEN
        s := ref #>> '{}';
        IF position(':' IN s) > 0 THEN
            SELECT array_agg(id) INTO ids FROM vms.tag
             WHERE category = split_part(s, ':', 1) AND name = substr(s, position(':' IN s) + 1);
        ELSE
            SELECT array_agg(id) INTO ids FROM vms.tag WHERE name = s;
        END IF;
    ELSE
        RAISE EXCEPTION 'tag reference must be an id or a name, not %', jsonb_typeof(ref)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF ids IS NULL THEN
        RAISE EXCEPTION 'tag % does not exist', ref
            USING ERRCODE = 'invalid_parameter_value';
    ELSIF cardinality(ids) > 1 THEN
        RAISE EXCEPTION 'tag name % is ambiguous', ref
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('%s tags in different categories have this name.', cardinality(ids)),
                  HINT = 'Write "category:name" or use the tag id.';
    END IF;
    RETURN ids[1];
END $$;
COMMENT ON FUNCTION vms.tag_resolve(jsonb) IS 'tag id from an id, a name or "category:name"';

CREATE FUNCTION vms.tag_create(category text, name text, parent text DEFAULT NULL) RETURNS bigint
    LANGUAGE sql SET search_path FROM CURRENT
    BEGIN ATOMIC
        INSERT INTO vms.tag (category, name, parent_id)
        VALUES (category, name,
                CASE WHEN parent IS NOT NULL THEN vms.tag_resolve(to_jsonb(category || ':' || parent)) END)
        ON CONFLICT ON CONSTRAINT tag_category_name_key DO UPDATE SET parent_id = EXCLUDED.parent_id
        RETURNING id;
    END;
COMMENT ON FUNCTION vms.tag_create(text, text, text) IS 'create (or re-parent) a tag; returns its id';

CREATE FUNCTION vms.tag_assign(channel vms.gbcode, tag text, source text DEFAULT 'manual') RETURNS boolean
    LANGUAGE sql SET search_path FROM CURRENT
    BEGIN ATOMIC
        WITH ins AS (
            INSERT INTO vms.channel_tag (channel_code, tag_id, source)
            VALUES (channel, vms.tag_resolve(to_jsonb(tag)), source)
            ON CONFLICT DO NOTHING RETURNING 1)
        SELECT count(*) > 0 FROM ins;
    END;
COMMENT ON FUNCTION vms.tag_assign(vms.gbcode, text, text) IS 'tag a channel (tag by name or "category:name"); false if it already had the tag';

CREATE FUNCTION vms.tag_unassign(channel vms.gbcode, tag text) RETURNS boolean
    LANGUAGE sql SET search_path FROM CURRENT
    BEGIN ATOMIC
        WITH del AS (
            DELETE FROM vms.channel_tag WHERE channel_code = channel AND tag_id = vms.tag_resolve(to_jsonb(tag))
            RETURNING 1)
        SELECT count(*) > 0 FROM del;
    END;
COMMENT ON FUNCTION vms.tag_unassign(vms.gbcode, text) IS 'remove a tag from a channel; false if it did not have it';
