-- Full-text search for topics: English stems, case- and accent-insensitive, title above abstract.

CREATE EXTENSION IF NOT EXISTS unaccent;

-- English stemming with accents folded first, so "Décodage" and "decodage" are the same word.
CREATE TEXT SEARCH CONFIGURATION english_unaccent (COPY = english);
ALTER TEXT SEARCH CONFIGURATION english_unaccent
    ALTER MAPPING FOR hword, hword_part, word WITH unaccent, english_stem;

-- The same function signup validation already uses, now accent-insensitive; topics keep their
-- meaning: websearch syntax ("phrases", OR, -exclusion), English stems.
CREATE OR REPLACE FUNCTION topic_query(topic text) RETURNS tsquery
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN websearch_to_tsquery('english_unaccent', topic);

-- Title words weigh A, abstract words B: a hit in the title ranks above one only in the abstract.
ALTER TABLE papers ADD COLUMN search_vector tsvector GENERATED ALWAYS AS (
    setweight(to_tsvector('english_unaccent', title), 'A') || setweight(to_tsvector('english_unaccent', abstract), 'B')
) STORED;
