"""pyxcat: an xCAT-compatible cluster management toolkit.

The ``xcatd`` package holds the core (noderange, db, dispatch); ``xcatd.commands``,
``xcatd.plugins``, ``xcatd.tables``, ``xcatd.templates`` and ``xcatd.postscripts`` are mapped
from the repository's top-level folders by setup.cfg.
"""

__version__ = "0.1.0"
