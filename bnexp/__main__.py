from bnexp.cli import entry

entry()
