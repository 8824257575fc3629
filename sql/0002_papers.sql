-- Papers, and which papers trended on which day according to which source.

CREATE TABLE papers (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- 'arxiv:2411.12345' when the paper has an arXiv id, else 'title:' and a hash of its normalised title.
    paper_key    text        NOT NULL UNIQUE,
    arxiv_id     text        UNIQUE,
    title        text        NOT NULL CHECK (length(title) BETWEEN 1 AND 1000),
    abstract     text        NOT NULL DEFAULT '' CHECK (length(abstract) <= 20000),
    authors      text[]      NOT NULL DEFAULT '{}',
    page_url     text,
    pdf_url      text,
    github_repo  text,
    project_page text,
    published_at timestamptz,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL
);

CREATE TABLE paper_days (
    day        date        NOT NULL,
    source     text        NOT NULL CHECK (source IN ('huggingface', 'arxiv', 'file')),
    paper_id   bigint      NOT NULL REFERENCES papers (id) ON DELETE CASCADE,
    -- The trending signal: upvotes where the source has them, and the paper's place in the source's list.
    upvotes    integer     CHECK (upvotes >= 0),
    rank       integer     NOT NULL CHECK (rank >= 1),
    fetched_at timestamptz NOT NULL,
    PRIMARY KEY (day, source, paper_id)
);

CREATE INDEX paper_days_paper ON paper_days (paper_id);
