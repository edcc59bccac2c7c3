"""python-nomad (from PyPI) against a Drover agent with ACLs enabled.

Usage: python3 nomad_acl.py PORT
Bootstraps, writes a policy, creates a token with it, and uses that token the way a stock
Nomad client does; exits non-zero with a message on any mismatch.
"""
import sys

import nomad
from nomad.api import exceptions

port = int(sys.argv[1])
anon = nomad.Nomad(host="127.0.0.1", port=port, timeout=10)

# Without a token nothing but the status endpoints answers.
try:
    anon.jobs.get_jobs()
    sys.exit("an anonymous job list was allowed")
except exceptions.URLNotAuthorizedNomadException:
    pass

boot = anon.acl.generate_bootstrap()
assert boot["Type"] == "management" and boot["SecretID"], boot
root = nomad.Nomad(host="127.0.0.1", port=port, timeout=10, token=boot["SecretID"])
assert root.acl.get_self_token()["AccessorID"] == boot["AccessorID"]
assert isinstance(root.jobs.get_jobs(), list)

rules = 'namespace "default" { policy = "read" }'
root.acl.create_policy("readonly", {"Name": "readonly", "Description": "read jobs", "Rules": rules})
assert root.acl.get_policy("readonly")["Rules"] == rules
assert [p["Name"] for p in root.acl.get_policies()] == ["readonly"]

tok = root.acl.create_token({"Name": "reader", "Type": "client", "Policies": ["readonly"]})
assert tok["SecretID"] and tok["Policies"] == ["readonly"], tok
reader = nomad.Nomad(host="127.0.0.1", port=port, timeout=10, token=tok["SecretID"])
assert isinstance(reader.jobs.get_jobs(), list)
me = reader.acl.get_self_token()
assert me["AccessorID"] == tok["AccessorID"] and me["SecretID"] == "", me
try:
    reader.job.register_job("denied", {"Job": {"ID": "denied", "Name": "denied", "Type": "batch",
                                               "Datacenters": ["*"], "TaskGroups": []}})
    sys.exit("a read-only token registered a job")
except exceptions.URLNotAuthorizedNomadException:
    pass
try:
    reader.acl.get_tokens()
    sys.exit("a client token listed tokens")
except exceptions.URLNotAuthorizedNomadException:
    pass

assert tok["AccessorID"] in [t["AccessorID"] for t in root.acl.get_tokens()]
assert root.acl.delete_token(tok["AccessorID"])
try:
    reader.jobs.get_jobs()
    sys.exit("a deleted token still works")
except exceptions.URLNotAuthorizedNomadException:
    pass
print("python-nomad acl: ok")
