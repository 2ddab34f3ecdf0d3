"""tabch: xCAT's name for chtab (the same changes, made through the daemon)."""
from xcatd.commands.chtab import table_command

main = table_command("tabch")
