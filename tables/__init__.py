"""The database schema, declared once.

Table and column names follow xCAT so that admins' scripts and knowledge carry over.
Every table is a plain mapping of text columns; ``keys`` form the primary key. A row whose
``disable`` column is ``1`` or ``yes`` is ignored by every reader.

>>> TABLES["nodelist"].keys
('node',)
>>> "groups" in TABLES["nodelist"].columns
True
"""
from __future__ import annotations

from dataclasses import dataclass, field

from xcatd.tables.descriptions import COLUMN_DOCS, TABLE_DOCS


@dataclass(frozen=True)
class TableDef:
    """One table: its name, key columns, every column in order, and column types."""

    name: str
    keys: tuple[str, ...]
    required: tuple[str, ...]
    columns: tuple[str, ...]
    types: dict[str, str] = field(default_factory=dict)

    @property
    def description(self) -> str:
        return TABLE_DOCS.get(self.name, "")

    def column_doc(self, column: str) -> str:
        return COLUMN_DOCS.get(self.name, {}).get(column, COLUMN_DOCS["*"].get(column, ""))

    @property
    def autoincrement(self) -> str | None:
        for col, typ in self.types.items():
            if "AUTO_INCREMENT" in typ:
                return col
        return None

    @property
    def node_keyed(self) -> bool:
        """True for tables whose rows are keyed by a node or group name (attribute tables)."""
        return self.keys == ("node",)


def _t(keys: tuple[str, ...], required: tuple[str, ...], columns: str,
       types: dict[str, str] | None = None) -> dict:
    return {"keys": keys, "required": required, "columns": tuple(columns.split()),
            "types": types or {}}


_DECL: dict[str, dict] = {
    'auditlog': _t(keys=('recid',), required=(),
        columns='recid audittime userid clientname clienttype command noderange args status comments disable',
        types={'recid': 'INTEGER AUTO_INCREMENT'}),
    'bootparams': _t(keys=('node',), required=(),
        columns='node kernel initrd kcmdline addkcmdline dhcpstatements adddhcpstatements comments disable'),
    'boottarget': _t(keys=('bprofile',), required=(),
        columns='bprofile kernel initrd kcmdline comments disable'),
    'cfgmgt': _t(keys=('node',), required=(),
        columns='node cfgmgr cfgserver roles comments disable'),
    'chain': _t(keys=('node',), required=(),
        columns='node currstate currchain chain ondiscover comments disable'),
    'deps': _t(keys=('node', 'cmd'), required=('node', 'cmd'),
        columns='node nodedep msdelay cmd comments disable'),
    'discoverydata': _t(keys=('uuid',), required=(),
        columns='uuid node method discoverytime arch cpucount cputype memory mtm serial nicdriver nicipv4 nichwaddr nicpci nicloc niconboard nicfirm switchname switchaddr switchdesc switchport otherdata comments disable',
        types={'otherdata': 'VARCHAR(2048)'}),
    'domain': _t(keys=('node',), required=(),
        columns='node ou authdomain adminuser adminpassword type comments disable'),
    'eventlog': _t(keys=('recid',), required=(),
        columns='recid eventtime eventtype monitor monnode node application component id severity message rawdata comments disable',
        types={'recid': 'INTEGER AUTO_INCREMENT'}),
    'firmware': _t(keys=('node',), required=('node',),
        columns='node cfgfile comments disable'),
    'hosts': _t(keys=('node',), required=(),
        columns='node ip hostnames otherinterfaces comments disable'),
    'hwinv': _t(keys=('node',), required=(),
        columns='node cputype cpucount memory disksize comments disable'),
    'hypervisor': _t(keys=('node',), required=(),
        columns='node type mgr interface netmap defaultnet cluster datacenter preferdirect comments disable'),
    'ipmi': _t(keys=('node',), required=(),
        columns='node bmc bmcport taggedvlan bmcid username password comments disable'),
    'iscsi': _t(keys=('node',), required=(),
        columns='node server target lun iname file userid passwd kernel kcmdline initrd comments disable'),
    'kit': _t(keys=('kitname',), required=(),
        columns='kitname basename description version release ostype isinternal kitdeployparams kitdir comments disable'),
    'kitcomponent': _t(keys=('kitcompname',), required=(),
        columns='kitcompname description kitname kitreponame basename version release serverroles kitpkgdeps prerequisite driverpacks kitcompdeps postbootscripts genimage_postinstall exlist comments disable'),
    'kitrepo': _t(keys=('kitreponame',), required=(),
        columns='kitreponame kitname osbasename osmajorversion osminorversion osarch compat_osbasenames kitrepodir comments disable'),
    'kvm_masterdata': _t(keys=('name',), required=(),
        columns='name xml comments disable',
        types={'xml': 'VARCHAR(16000)'}),
    'kvm_nodedata': _t(keys=('node',), required=('node',),
        columns='node xml comments disable',
        types={'xml': 'VARCHAR(16000)'}),
    'linuximage': _t(keys=('imagename',), required=(),
        columns='imagename template boottarget addkcmdline pkglist pkgdir otherpkglist otherpkgdir exlist postinstall rootimgdir kerneldir nodebootif otherifce netdrivers kernelver krpmver permission dump crashkernelsize partitionfile driverupdatesrc comments disable'),
    'litefile': _t(keys=('image', 'file'), required=('image', 'file'),
        columns='image file options comments disable'),
    'litetree': _t(keys=('priority',), required=('priority', 'directory'),
        columns='priority image directory mntopts comments disable'),
    'mac': _t(keys=('node',), required=(),
        columns='node interface mac comments disable'),
    'mic': _t(keys=('node',), required=(),
        columns='node host id nodetype bridge onboot vlog powermgt comments disable'),
    'monitoring': _t(keys=('name',), required=('name',),
        columns='name nodestatmon comments disable'),
    'monsetting': _t(keys=('name', 'key'), required=('name', 'key'),
        columns='name key value comments disable'),
    'mp': _t(keys=('node',), required=(),
        columns='node mpa id nodetype comments disable'),
    'mpa': _t(keys=('mpa', 'username'), required=(),
        columns='mpa username password displayname slots urlpath comments disable'),
    'networks': _t(keys=('net', 'mask'), required=(),
        columns='netname net mask mgtifname gateway dhcpserver tftpserver nameservers ntpservers logservers dynamicrange staticrange staticrangeincrement nodehostname ddnsdomain vlanid domain mtu comments disable'),
    'nics': _t(keys=('node',), required=(),
        columns='node nicips nichostnamesuffixes nichostnameprefixes nictypes niccustomscripts nicnetworks nicaliases nicextraparams nicdevices nicsadapter comments disable'),
    'nimimage': _t(keys=('imagename',), required=(),
        columns='imagename nimtype lpp_source spot root dump paging resolv_conf tmp home shared_home res_group nimmethod script bosinst_data installp_bundle mksysb fb_script shared_root otherpkgs image_data configdump comments disable'),
    'nodegroup': _t(keys=('groupname',), required=(),
        columns='groupname grouptype members membergroups wherevals comments disable'),
    'nodehm': _t(keys=('node',), required=(),
        columns='node power mgt cons termserver termport conserver serialport serialspeed serialflow getmac cmdmapping consoleondemand consoleenabled comments disable'),
    'nodelist': _t(keys=('node',), required=(),
        columns='node groups status statustime appstatus appstatustime primarysn hidden updatestatus updatestatustime zonename comments disable'),
    'nodepos': _t(keys=('node',), required=(),
        columns='node rack u chassis slot room height comments disable'),
    'noderes': _t(keys=('node',), required=(),
        columns='node servicenode netboot tftpserver tftpdir nfsserver monserver nfsdir installnic primarynic discoverynics cmdinterface xcatmaster current_osimage next_osimage nimserver routenames nameservers proxydhcp syslog comments disable'),
    'nodetype': _t(keys=('node',), required=(),
        columns='node os arch profile provmethod supportedarchs nodetype comments disable'),
    'notification': _t(keys=('filename',), required=('tables', 'filename'),
        columns='filename tables tableops comments disable'),
    'openbmc': _t(keys=('node',), required=(),
        columns='node bmc consport taggedvlan username password comments disable'),
    'osdistro': _t(keys=('osdistroname',), required=(),
        columns='osdistroname basename majorversion minorversion arch type dirpaths comments disable'),
    'osdistroupdate': _t(keys=('osupdatename',), required=(),
        columns='osupdatename osdistroname dirpath downloadtime comments disable'),
    'osimage': _t(keys=('imagename',), required=(),
        columns='imagename groups profile imagetype description provmethod rootfstype nfsrootopts osdistroname osupdatename cfmdir osname osvers osarch synclists postscripts postbootscripts serverrole isdeletable kitcomponents environvar comments disable',
        types={'osupdatename': 'VARCHAR(1024)'}),
    'passwd': _t(keys=('key', 'username'), required=(),
        columns='key username password cryptmethod authdomain comments disable'),
    'pdu': _t(keys=('node',), required=(),
        columns='node nodetype pdutype outlet username password snmpversion community snmpuser authtype authkey privtype privkey seclevel comments disable'),
    'pduoutlet': _t(keys=('node',), required=(),
        columns='node pdu comments disable'),
    'performance': _t(keys=('timestamp', 'node', 'attrname'), required=(),
        columns='timestamp node attrname attrvalue comments disable'),
    'policy': _t(keys=('priority',), required=(),
        columns='priority name host commands noderange parameters time rule comments disable'),
    'postscripts': _t(keys=('node',), required=(),
        columns='node postscripts postbootscripts comments disable'),
    'ppc': _t(keys=('node',), required=(),
        columns='node hcp id pprofile parent nodetype supernode sfp comments disable'),
    'ppcdirect': _t(keys=('hcp', 'username'), required=(),
        columns='hcp username password comments disable'),
    'ppchcp': _t(keys=('hcp',), required=(),
        columns='hcp username password comments disable'),
    'prescripts': _t(keys=('node',), required=(),
        columns='node begin end comments disable'),
    'prodkey': _t(keys=('node', 'product'), required=(),
        columns='node product key comments disable'),
    'rack': _t(keys=('rackname',), required=(),
        columns='rackname displayname num height room comments disable'),
    'routes': _t(keys=('routename',), required=(),
        columns='routename net mask gateway ifname comments disable'),
    'servicenode': _t(keys=('node',), required=(),
        columns='node nameserver dhcpserver tftpserver nfsserver conserver monserver ldapserver ntpserver ftpserver nimserver ipforward dhcpinterfaces proxydhcp comments disable'),
    'site': _t(keys=('key',), required=(),
        columns='key value comments disable'),
    'statelite': _t(keys=('node',), required=('node', 'statemnt'),
        columns='node image statemnt mntopts comments disable'),
    'storage': _t(keys=('node',), required=(),
        columns='node osvolume size state storagepool hypervisor fcprange volumetag type controller comments disable'),
    'switch': _t(keys=('node', 'switch', 'port'), required=(),
        columns='node switch port vlan interface comments disable'),
    'switches': _t(keys=('switch',), required=(),
        columns='switch snmpversion username password privacy auth linkports sshusername sshpassword protocol switchtype comments disable'),
    'taskstate': _t(keys=('node',), required=(),
        columns='node command state pid reserve disable'),
    'token': _t(keys=('tokenid',), required=(),
        columns='tokenid username expire created access comments disable'),
    'virtsd': _t(keys=('node',), required=(),
        columns='node sdtype stype location host cluster datacenter comments disable'),
    'vm': _t(keys=('node',), required=(),
        columns='node mgr host migrationdest storage storagemodel storagecache storageformat cfgstore memory cpus nics nicmodel bootorder clockoffset virtflags master vncport textconsole powerstate beacon datacenter cluster guestostype othersettings physlots vidmodel vidproto vidpassword comments disable'),
    'vmmaster': _t(keys=('name',), required=(),
        columns='name os arch profile storage storagemodel nics vintage originator virttype specializeparameters comments disable'),
    'vpd': _t(keys=('node',), required=(),
        columns='node serial mtm side asset uuid comments disable'),
    'websrv': _t(keys=('node',), required=(),
        columns='node port username password comments disable'),
    'winimage': _t(keys=('imagename',), required=(),
        columns='imagename template installto partitionfile winpepath comments disable'),
    'zone': _t(keys=('zonename',), required=(),
        columns='zonename sshkeydir sshbetweennodes defaultzone comments disable'),
    'zvm': _t(keys=('node',), required=(),
        columns='node hcp userid nodetype parent comments disable discovered status'),
    'zvmivp': _t(keys=('id',), required=(),
        columns='id ip schedule last_run type_of_run access_user orch_parms prep_parms main_ivp_parms comments disable'),
    # pyxcat's own tables
    'jobs': _t(keys=('jobid',), required=('jobid',),
        columns='jobid user client clienttype command noderange args state created started finished exitcode comments disable'),
    'jobresults': _t(keys=('jobid', 'seq'), required=('jobid', 'seq'),
        columns='jobid seq node data error warning errorcode comments disable',
        types={'seq': 'INTEGER', 'errorcode': 'INTEGER'}),
    'bootstate': _t(keys=('node',), required=('node',),
        columns='node tokenhash installboots lastfetch tokentime comments disable',
        types={'installboots': 'INTEGER'}),
    'nodecert': _t(keys=('node',), required=('node',),
        columns='node fingerprint serial issued expires enrolhash comments disable'),
    'nodeevents': _t(keys=('recid',), required=('node',),
        columns='recid node time phase script rc duration status tail comments disable',
        types={'recid': 'INTEGER AUTO_INCREMENT'}),
    'nodelock': _t(keys=('node',), required=('node',),
        columns='node locked comments disable'),
    'snstatus': _t(keys=('node',), required=('node',),
        columns='node address port heartbeat comments disable'),
    'nodeowner': _t(keys=('node',), required=('node',),
        columns='node servicenode epoch since comments disable',
        types={'epoch': 'INTEGER'}),
}

TABLES: dict[str, TableDef] = {name: TableDef(name=name, **d) for name, d in _DECL.items()}

#: Columns that hold secrets: masked in every listing unless the caller asks for them.
SECRET_COLUMNS: frozenset[tuple[str, str]] = frozenset({
    ("passwd", "password"), ("ipmi", "password"), ("openbmc", "password"),
    ("mpa", "password"), ("ppchcp", "password"), ("ppcdirect", "password"),
    ("pdu", "password"), ("pdu", "authkey"), ("pdu", "privkey"), ("pdu", "community"),
    ("switches", "password"), ("switches", "sshpassword"), ("websrv", "password"),
    ("domain", "adminpassword"), ("iscsi", "passwd"), ("vm", "vidpassword"),
    ("prodkey", "key"),
})

#: What a secret prints as. Fixed width, so the mask does not leak the length.
SECRET_MASK = "********"


#: Site keys whose value is a secret (omapikey, ldappassword, apitoken ...): never given to a
#: node, nor to a service node's database role. The pattern is POSIX and Python alike.
SECRET_SITE_KEY = r"passw(or)?d|secret|credential|privkey|authkey|(key|token)$"
#: site keys the pattern would catch that hold no secret
NOT_SECRET_SITE_KEYS = frozenset({"genpasswords"})


def is_secret(table: str, column: str) -> bool:
    return (table, column) in SECRET_COLUMNS
