-- Sample learning data: every test database is cloned from a template holding it.
CREATE TABLE courses (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    title       text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE tasks (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    course_id   bigint NOT NULL REFERENCES courses(id),
    prompt      text NOT NULL,
    rubric      jsonb NOT NULL
);
CREATE TABLE submissions (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task_id     bigint NOT NULL REFERENCES tasks(id),
    learner     text NOT NULL,
    answer      text NOT NULL,
    submitted_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX submissions_task_idx ON submissions (task_id);

INSERT INTO courses (title)
SELECT 'Course ' || g FROM generate_series(1, 5) g;
INSERT INTO tasks (course_id, prompt, rubric)
SELECT 1 + (g % 5), 'Explain concept #' || g,
       jsonb_build_object('keywords', jsonb_build_array('index', 'transaction', 'lock'), 'points', 10)
FROM generate_series(1, 20) g;
INSERT INTO submissions (task_id, learner, answer)
SELECT 1 + (g % 20), 'learner-' || (g % 97),
       'An index speeds up reads; a transaction groups writes. Attempt ' || g
FROM generate_series(1, 500) g;
