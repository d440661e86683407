"""README.md's SQL code blocks, for the tests that check README against the
extension (test/integration/readme_examples.sh, readme_reference.sh)."""


def sql_blocks(path):
    """Each ```sql block of the file at path, as its list of lines."""
    blocks, block, inside = [], [], False
    for line in open(path):
        if line.startswith("```sql"):
            inside, block = True, []
        elif line.startswith("```") and inside:
            inside = False
            blocks.append(block)
        elif inside:
            block.append(line.rstrip("\n"))
    return blocks
