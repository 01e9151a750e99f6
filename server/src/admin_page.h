// The admin web page served at "/": a single self-contained HTML file (no external assets)
// that reads the JSON API with the admin token the user pastes (kept in sessionStorage).
#ifndef IDLEGRID_SERVER_SRC_ADMIN_PAGE_H_
#define IDLEGRID_SERVER_SRC_ADMIN_PAGE_H_

namespace idlegrid::server {

inline constexpr const char* kAdminPage = R"html(<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>idlegrid</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.3em} h2{font-size:1.1em;margin-top:1.5em}
table{border-collapse:collapse;min-width:40em} td,th{border-bottom:1px solid #ddd;padding:.3em .6em;text-align:left}
.bar{display:inline-block;width:8em;height:.7em;background:#eee}.bar i{display:block;height:100%;background:#3a7}
.err{color:#b00} button{margin-left:.5em} #stats span{margin-right:1.5em}
</style></head><body>
<h1>idlegrid work server</h1>
<p id="login">Admin token: <input id="token" type="password" size="50"><button onclick="save()">Show</button>
<span class="err" id="error"></span></p>
<div id="stats"></div>
<h2>Jobs</h2><table id="jobs"><thead><tr><th>job</th><th>kind</th><th>name</th><th>state</th><th>units</th><th></th></tr></thead><tbody></tbody></table>
<h2>Nodes</h2><table id="nodes"><thead><tr><th>node</th><th>host</th><th>cores</th><th>RAM</th><th>online</th><th>running</th><th>units done</th><th></th></tr></thead><tbody></tbody></table>
<script>
"use strict";
let token = sessionStorage.getItem("idlegrid-token") || "";
function save(){ token = document.getElementById("token").value.trim(); sessionStorage.setItem("idlegrid-token", token); refresh(); }
async function api(path, method){
  const r = await fetch("/api/v1" + path, {method: method || "GET", headers: {"Authorization": "Bearer " + token},
                                           body: method === "POST" ? "{}" : undefined});
  const j = await r.json();
  if (!r.ok) throw new Error(j.error || r.status);
  return j;
}
function cell(row, text){ const td = row.insertCell(); td.textContent = text; return td; }
async function refresh(){
  if (!token) return;
  try {
    const [stats, jobs, nodes] = await Promise.all([api("/stats"), api("/jobs"), api("/nodes")]);
    document.getElementById("error").textContent = "";
    const s = document.getElementById("stats"); s.textContent = "";
    for (const [k, v] of Object.entries({"nodes online": stats.nodes_online, "active leases": stats.leases_active,
                                         "units ready": (stats.units.ready||0), "units done": (stats.units.done||0)})) {
      const e = document.createElement("span"); e.textContent = k + ": " + v; s.appendChild(e);
    }
    const jb = document.querySelector("#jobs tbody"); jb.textContent = "";
    for (const j of jobs.jobs) {
      const r = jb.insertRow();
      cell(r, j.job_id); cell(r, j.kind); cell(r, j.name); cell(r, j.state + (j.error ? ": " + j.error : ""));
      const td = cell(r, ""); const bar = document.createElement("span"); bar.className = "bar";
      const fill = document.createElement("i"); fill.style.width = (j.units ? 100 * j.units_done / j.units : 0) + "%";
      bar.appendChild(fill); td.appendChild(bar); td.append(" " + j.units_done + "/" + j.units);
      const act = cell(r, "");
      if (j.state === "queued" || j.state === "running") {
        const b = document.createElement("button"); b.textContent = "cancel";
        b.onclick = () => api("/jobs/" + j.job_id + "/cancel", "POST").then(refresh, e => alert(e.message)); act.appendChild(b);
      }
    }
    const nb = document.querySelector("#nodes tbody"); nb.textContent = "";
    for (const n of nodes.nodes) {
      const r = nb.insertRow();
      cell(r, n.node_id); cell(r, n.info.hostname); cell(r, n.info.cores);
      cell(r, (n.info.ram_bytes / 2**30).toFixed(1) + " GiB"); cell(r, n.revoked ? "revoked" : (n.online ? "yes" : "no"));
      cell(r, n.running || ""); cell(r, n.units_done);
      const act = cell(r, "");
      if (!n.revoked) { const b = document.createElement("button"); b.textContent = "revoke";
        b.onclick = () => api("/nodes/" + n.node_id + "/revoke", "POST").then(refresh, e => alert(e.message)); act.appendChild(b); }
    }
  } catch (e) { document.getElementById("error").textContent = e.message; }
}
document.getElementById("token").value = token;
refresh(); setInterval(refresh, 3000);
</script></body></html>
)html";

}  // namespace idlegrid::server

#endif  // IDLEGRID_SERVER_SRC_ADMIN_PAGE_H_
