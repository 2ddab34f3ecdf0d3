"""Object definition templates (``lsdef --template``, ``mkdef --template``): stanza files under
``objects/<object type>/``, read with importlib.resources (see xcatd.db.objtemplates)."""
