"""The cloud side of the cloud link (issue 20): the link endpoint, the registry of edges,
and RemoteInput, the hub input of a source an edge serves."""
