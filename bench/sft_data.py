"""Real instruction rows for the SFT benchmarks: the rows of corpusmill.demo_sft (Debian man pages in
English, German, French and Spanish; `make bench` installs the packages). Import from a bench script
as ``from sft_data import instruction_rows`` (run from the repository root or bench/)."""

from corpusmill.demo_sft import humaneval_file, instruction_rows, sharegpt_conversations  # noqa: F401
