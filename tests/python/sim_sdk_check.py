"""Drives the simulated cloud with the unmodified openstacksdk, asserting every step.

Run by tests/sim_python_sdk.rs with OS_CLIENT_CONFIG_FILE/OS_CLOUD pointing at the
simulator's clouds.yaml and SIM_TEST_PUBKEY holding an OpenSSH public key.
"""
import os
import sys
import time

import openstack


def check(cond, what):
    if not cond:
        print(f"FAIL: {what}", flush=True)
        sys.exit(1)
    print(f"ok: {what}", flush=True)


def wait_until(pred, what, timeout=30.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = pred()
        if value:
            return value
        time.sleep(0.1)
    check(False, f"{what} (timed out)")


conn = openstack.connect(cloud=os.environ["OS_CLOUD"])

# 1. authenticate
token = conn.authorize()
check(bool(token), "password login returns a token")
check(conn.current_project.name == "demo", "token is scoped to project demo")
appcred = openstack.connect(cloud=os.environ["SIM_APPCRED_CLOUD"])
check(bool(appcred.authorize()), "application-credential login returns a token")
check(len(list(appcred.compute.flavors())) >= 2, "application-credential token reaches Nova")

# 2. find flavor, image and network by name
flavor = conn.compute.find_flavor("m1.small", ignore_missing=False)
check(flavor.name == "m1.small" and flavor.vcpus == 1 and flavor.ram == 2048, "flavor m1.small found by name")
image = conn.image.find_image("cirros-0.6.2", ignore_missing=False)
check(image.status == "active", "image cirros-0.6.2 found by name")
ubuntu = list(conn.image.images(name="ubuntu-24.04"))
check(len(ubuntu) == 3, "three images share the name ubuntu-24.04")
newest_active = max((i for i in ubuntu if i.status == "active"), key=lambda i: i.created_at)
check(newest_active.created_at.startswith("2026-06-01"), "newest active ubuntu-24.04 is the June one")
net = conn.network.find_network("private", ignore_missing=False)
check(bool(net.subnet_ids), "network private found by name, with a subnet")

# 3. create a server with a key pair and a security group
kp = conn.compute.create_keypair(name="sdk-key", public_key=os.environ["SIM_TEST_PUBKEY"])
check(kp.name == "sdk-key" and kp.fingerprint, "key pair imported")
check(conn.compute.get_keypair("sdk-key").public_key.strip() == os.environ["SIM_TEST_PUBKEY"].strip(), "key pair shows its public key")
sg = conn.network.create_security_group(name="sdk-sg", description="ssh in")
rule = conn.network.create_security_group_rule(
    security_group_id=sg.id, direction="ingress", protocol="tcp",
    port_range_min=22, port_range_max=22, ethertype="IPv4")
check(rule.security_group_id == sg.id, "security group with an SSH rule created")
server = conn.compute.create_server(
    name="sdk-1", flavor_id=flavor.id, image_id=image.id, networks=[{"uuid": net.id}],
    key_name=kp.name, security_groups=[{"name": sg.name}], metadata={"owner": "sdk"})
check(bool(server.id), "server create accepted")
other = conn.compute.create_server(
    name="sdk-10", flavor_id=flavor.id, image_id=image.id, networks=[{"uuid": net.id}])

# 4. wait for ACTIVE
server = conn.compute.wait_for_server(server, status="ACTIVE", interval=0.2, wait=60)
check(server.status == "ACTIVE", "server reached ACTIVE")
check(server.key_name == "sdk-key", "server shows its key pair")
check(server.metadata.get("owner") == "sdk", "server shows its metadata")
check(any(g["name"] == "sdk-sg" for g in server.security_groups), "server shows its security group")
conn.compute.wait_for_server(other, status="ACTIVE", interval=0.2, wait=60)

# 5. read its address
addr = server.addresses["private"][0]["addr"]
check(addr.startswith("127.77."), f"server has a fixed address {addr}")
ports = list(conn.network.ports(device_id=server.id))
check(len(ports) == 1 and ports[0].fixed_ips[0]["ip_address"] == addr, "its Neutron port holds the same address")
console = wait_until(
    lambda: (lambda out: out if "BEGIN SSH HOST KEY FINGERPRINTS" in out else None)(
        conn.compute.get_server_console_output(server)["output"]),
    "console log prints SSH host key fingerprints")
check("(ED25519)" in console, "console log names the ED25519 host key")

# 6. list by name (Nova's name filter is a regex: sdk-1 also matches sdk-10)
names = sorted(s.name for s in conn.compute.servers(name="sdk-1"))
check(names == ["sdk-1", "sdk-10"], f"name filter sdk-1 matches {names} (regex trap)")
exact = [s.name for s in conn.compute.servers(name="^sdk-1$")]
check(exact == ["sdk-1"], "anchored name filter matches only sdk-1")
page1 = list(conn.compute.servers(details=False, limit=1, paginated=False))
check(len(page1) == 1, "limit=1 returns one server")

# 8. floating IP: create from the external network, associate, disassociate, delete
public = conn.network.find_network("public", ignore_missing=False)
check(public.is_router_external, "network public is external")
fip = conn.network.create_ip(floating_network_id=public.id)
check(fip.floating_ip_address.startswith("127.78.") and fip.port_id is None, f"floating IP {fip.floating_ip_address} created")
conn.network.update_ip(fip, port_id=ports[0].id)
fip = conn.network.get_ip(fip.id)
check(fip.port_id == ports[0].id and fip.fixed_ip_address == addr, "floating IP associated with the server's port")
server = conn.compute.get_server(server.id)
check(any(a["OS-EXT-IPS:type"] == "floating" and a["addr"] == fip.floating_ip_address
          for a in server.addresses["private"]), "server lists the floating address")
conn.network.update_ip(fip, port_id=None)
check(conn.network.get_ip(fip.id).port_id is None, "floating IP disassociated")
conn.network.delete_ip(fip)
check(conn.network.find_ip(fip.id) is None, "floating IP deleted")

# 7. delete and wait until gone
for s in (server, other):
    conn.compute.delete_server(s)
    conn.compute.wait_for_delete(s, interval=0.1, wait=30)
    # Nova shows DELETED briefly, then 404.
    wait_until(lambda: conn.compute.find_server(s.id) is None, f"server {s.name} answers 404")
    check(True, f"server {s.name} is gone")
check(list(conn.network.ports(device_id=server.id)) == [], "server's port deleted with it")
# The cloud layer (what Ansible and most tools use) works as well.
cl = conn.create_server("cl-1", image="cirros-0.6.2", flavor="m1.tiny", network="private",
                        key_name="sdk-key", wait=True, auto_ip=False, timeout=60)
check(cl.status == "ACTIVE" and cl.private_v4.startswith("127.77."), "cloud layer: create_server(wait=True)")
check(conn.get_server("cl-1").id == cl.id, "cloud layer: get_server by exact name")
cl_fip = conn.create_floating_ip(network="public", server=cl, wait=True)
check(conn.get_server(cl.id).public_v4 == cl_fip.floating_ip_address, "cloud layer: floating IP attached to the server")
conn.delete_floating_ip(cl_fip.id)
check(conn.delete_server("cl-1", wait=True, timeout=60), "cloud layer: delete_server(wait=True)")

conn.compute.delete_keypair(kp)
conn.network.delete_security_group(sg)
check(conn.network.find_security_group("sdk-sg") is None, "security group deleted")
print("ALL OK", flush=True)
