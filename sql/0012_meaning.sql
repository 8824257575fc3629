-- Relevance by meaning: vectors of papers and topics, the arXiv categories of papers, and
-- subscribers' "more/less like this" feedback. Vectors are plain real[] so stock PostgreSQL works;
-- the similarity is computed in the service, against one day's few hundred papers.

-- One vector per paper, from its title and abstract; model names what made it, so a change of model
-- is noticed and the embed verb redoes exactly the stale ones.
CREATE TABLE paper_embeddings (
    paper_id bigint  NOT NULL PRIMARY KEY REFERENCES papers (id) ON DELETE CASCADE,
    model    text    NOT NULL,
    vector   real[]  NOT NULL CHECK (cardinality(vector) BETWEEN 1 AND 4096)
);

-- One vector per distinct topic text, shared by every subscriber who typed it.
CREATE TABLE topic_embeddings (
    topic  text    NOT NULL PRIMARY KEY CHECK (length(topic) BETWEEN 1 AND 200),
    model  text    NOT NULL,
    vector real[]  NOT NULL CHECK (cardinality(vector) BETWEEN 1 AND 4096)
);

-- arXiv categories where the source gives them (cs.CL, cs.CV, ...), for topics like category:cs.CV.
ALTER TABLE papers ADD COLUMN categories text[] NOT NULL DEFAULT '{}';

-- "More like this" (liked) and "less like this" (not liked): examples that steer later rankings.
CREATE TABLE paper_feedback (
    subscriber_id bigint      NOT NULL REFERENCES subscribers (id) ON DELETE CASCADE,
    paper_id      bigint      NOT NULL REFERENCES papers (id) ON DELETE CASCADE,
    liked         boolean     NOT NULL,
    created_at    timestamptz NOT NULL,
    PRIMARY KEY (subscriber_id, paper_id)
);

-- A paper whose title or abstract changes loses its vector; the next embedding of its day makes a new one.
CREATE FUNCTION forget_paper_embedding() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM paper_embeddings WHERE paper_id = NEW.id;
    RETURN NEW;
END
$$;
CREATE TRIGGER papers_text_changed AFTER UPDATE OF title, abstract ON papers
    FOR EACH ROW WHEN (OLD.title IS DISTINCT FROM NEW.title OR OLD.abstract IS DISTINCT FROM NEW.abstract)
    EXECUTE FUNCTION forget_paper_embedding();
