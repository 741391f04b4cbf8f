-- Which copy of a run's message the schedulers published last. Every publish by a
-- scheduler (dispatch, the next attempt, publishing a returned copy again) counts one up,
-- and the message carries the number: a report that a copy came back to a queue is acted
-- on only for the latest copy, so a copy reported twice is not published twice.
ALTER TABLE runs ADD COLUMN dispatch integer NOT NULL DEFAULT 0;
