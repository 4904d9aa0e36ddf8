// The live page: one snapshot per server-sent event, drawn into the table,
// the links list and a rate plot per agent.  No library, nothing fetched
// from elsewhere.
"use strict";

const PLOT_WIDTH = 160, PLOT_HEIGHT = 36;

function text(value) {
  return value === null || value === undefined ? "\u2013" : String(value);
}

function when(seconds) {
  if (seconds === null || seconds === undefined) return "\u2013";
  return new Date(seconds * 1000).toLocaleTimeString();
}

function ago(seconds, now) {
  if (seconds === null || seconds === undefined) return "never";
  const span = Math.max(0, now - seconds);
  if (span < 60) return span.toFixed(0) + " s ago";
  if (span < 3600) return (span / 60).toFixed(0) + " min ago";
  return when(seconds);
}

function pair(counts) {
  return counts ? counts.in.toLocaleString() + " / " + counts.out.toLocaleString() : "\u2013";
}

function drops(counts) {
  if (!counts) return "\u2013";
  const reasons = Object.keys(counts).filter((k) => counts[k] > 0).sort();
  if (!reasons.length) return "0";
  return reasons.map((k) => k + ": " + counts[k].toLocaleString()).join(", ");
}

function plot(canvas, rates) {
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  if (!rates || rates.length < 2) return;
  let top = 1;
  for (const [, rin, rout] of rates) top = Math.max(top, rin, rout);
  const first = rates[0][0], span = Math.max(1, rates[rates.length - 1][0] - first);
  for (const [index, colour] of [[1, "#1f6feb"], [2, "#d4731c"]]) {
    ctx.beginPath();
    ctx.strokeStyle = colour;
    rates.forEach((point, i) => {
      const x = ((point[0] - first) / span) * (canvas.width - 2) + 1;
      const y = canvas.height - 1 - (point[index] / top) * (canvas.height - 2);
      if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
    });
    ctx.stroke();
  }
  ctx.fillStyle = "#666";
  ctx.font = "10px sans-serif";
  ctx.fillText("peak " + top.toFixed(top < 10 ? 1 : 0) + "/s", 2, 10);
}

function cell(row, cls, value) {
  const td = document.createElement("td");
  td.className = cls;
  td.textContent = value;
  row.appendChild(td);
  return td;
}

function agentRow(agent, now) {
  const row = document.createElement("tr");
  row.dataset.agent = agent.name;
  cell(row, "name", agent.name + (agent.direct ? "" : " (via router)"));
  cell(row, "addr", agent.addresses.join(", ") || "\u2013");
  cell(row, "since", when(agent.connected_since));
  cell(row, "broker", text(agent.broker));
  cell(row, "num packets", pair(agent.packets));
  cell(row, "num bytes", pair(agent.bytes));
  const d = cell(row, "drops-cell", drops(agent.drops));
  if (d.textContent !== "0" && d.textContent !== "\u2013") d.classList.add("drops");
  cell(row, "last", ago(agent.last_packet, now));
  const td = cell(row, "plot", "");
  const canvas = document.createElement("canvas");
  canvas.width = PLOT_WIDTH;
  canvas.height = PLOT_HEIGHT;
  const last = agent.rates && agent.rates.length ? agent.rates[agent.rates.length - 1] : null;
  canvas.title = last ? last[1].toFixed(1) + " in, " + last[2].toFixed(1) + " out per second"
                      : "no rate yet";
  td.appendChild(canvas);
  plot(canvas, agent.rates);
  return row;
}

function render(state) {
  const r = state.router;
  document.getElementById("vhost").textContent = r.vhost ? "\u2013 vhost " + r.vhost : "";
  document.getElementById("router").textContent =
    "router " + r.state + (r.standby ? " (standing by)" : "") + " on " + r.broker +
    "; routing " + r.policy + "; " +
    (r.recording ? "recording: " + r.recording : "not recording");
  const body = document.querySelector("#agents tbody");
  body.replaceChildren(...state.agents.map((a) => agentRow(a, state.time)));
  document.getElementById("agent-count").textContent = "(" + state.agents.length + ")";
  document.getElementById("no-agents").hidden = state.agents.length > 0;
  const links = document.getElementById("links");
  links.replaceChildren(...state.links.map((link) => {
    const li = document.createElement("li");
    li.dataset.link = link.ends.join("--");
    li.className = link.up ? "up" : "down";
    li.textContent = link.ends.join(" \u2194 ") + (link.up ? "" : " (not both connected)");
    return li;
  }));
  if (!state.links.length) {
    const li = document.createElement("li");
    li.textContent = "none";
    links.appendChild(li);
  }
  document.getElementById("observers").textContent =
    state.observers.length ? "Observers (a copy of every packet): " + state.observers.join(", ") : "";
  const feed = document.getElementById("feed");
  feed.className = "up";
  feed.textContent = "live, updated " + when(state.time);
}

const events = new EventSource("events");
events.onmessage = (message) => render(JSON.parse(message.data));
events.onerror = () => {
  const feed = document.getElementById("feed");
  feed.className = "down";
  feed.textContent = "lost the router; trying again";
};
