-- don't
SELECT '"x 123"'