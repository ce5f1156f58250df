"""A plan as BPMN 2.0: the process graph (``graph``), its layout in lanes (``layout``), the
BPMN 2.0 XML export (``export``) and import (``importer``, within ``subset``), what BPMN has
no element for in the planflow namespace (``extensions``), the OMG schema (``schema``, ``xsd/``)."""
