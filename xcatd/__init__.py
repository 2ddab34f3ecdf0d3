"""pyxcat: an xCAT-compatible cluster management toolkit.

``xcatd`` holds the packages named for what they are (base, db, netboot, netconf, hardware,
security, provision, daemon, fronts, and the handler API); ``xcatd.commands``,
``xcatd.plugins``, ``xcatd.tables``, ``xcatd.templates`` and ``xcatd.postscripts`` are mapped
from the repository's top-level folders by setup.cfg. The README's Layout section shows the
layers and the direction of imports.
"""

__version__ = "0.1.0"
