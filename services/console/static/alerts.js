// Live alerts: the console relays the hotlist service's SubscribeAlerts stream as server-sent events.
"use strict";
(function () {
  const table = document.getElementById("alerts");
  const state = document.getElementById("stream-state");
  const seen = new Set();

  function cell(row, text, cls) {
    const td = row.insertCell();
    td.textContent = text;
    if (cls) td.className = cls;
    return td;
  }

  function show(alert) {
    if (seen.has(alert.alert_id)) return;
    seen.add(alert.alert_id);
    const empty = document.getElementById("no-alerts");
    if (empty) empty.remove();
    const row = table.tBodies[0].insertRow(0);
    row.dataset.alertId = alert.alert_id;
    cell(row, alert.raised_at.replace("T", " ").replace("+00:00", " UTC"));
    cell(row, alert.plate, "plate");
    cell(row, alert.state);
    cell(row, alert.camera_id);
    cell(row, alert.list_id + " · " + alert.code + " " + alert.reason);
    cell(row, alert.match + (alert.historical ? " (historical)" : ""));
    const status = cell(row, alert.status, "status status-" + alert.status);
    status.className = "";
    status.textContent = "";
    const badge = document.createElement("span");
    badge.className = "status status-" + alert.status;
    badge.textContent = alert.status;
    status.appendChild(badge);
    const link = document.createElement("a");
    link.href = "/alerts/" + encodeURIComponent(alert.alert_id);
    link.textContent = "verify";
    row.insertCell().appendChild(link);
  }

  const source = new EventSource("/alerts/stream");
  source.onopen = () => { state.textContent = "connected"; };
  source.onerror = () => { state.textContent = "reconnecting…"; };
  source.addEventListener("alert", (e) => show(JSON.parse(e.data)));
  source.addEventListener("gone", (e) => { state.textContent = "stream ended: " + e.data; });
})();
