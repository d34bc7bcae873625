"""Streams published into the gateway: the H5_PUSH source's slot and what receivers share."""
