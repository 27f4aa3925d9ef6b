"""The node agent: reads every accelerator on a node and sends the samples to the server.

    python -m booking.agent --server https://testbed.example.kr --key tbn_<host>_<secret> [--interval 10]

It needs only the standard library and nvidia-ml-py (no Django): see `sampler` (NVML and a fake),
`spool` (the on-disk queue that survives restarts) and `client` (HTTP and the loop).
"""
