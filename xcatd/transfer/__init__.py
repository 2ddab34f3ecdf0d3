"""xcatexport and xcatimport: a whole management node (tables, certificates, keys, the
site's own files, optionally images and media) in one archive, and back.

archive.py (the archive's layout, streamed writing and reading), secretbox.py (passphrase
encryption of secrets), exporting.py, importing.py, remap.py (``--remap old=new``)."""
