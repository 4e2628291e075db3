// The reporting dashboard: reads the report endpoints of this service with the caller's own
// credentials and draws them as small SVG charts. No framework and nothing from the internet.
//
// Credentials: a bearer token (or API key) with reports:read, given in the sign-in form or in
// the address's fragment (/dashboard#token=...; a fragment never reaches a server or its logs).
// It is kept in sessionStorage (this tab only) and sent to this service's report endpoints.
//
// The address's query sets the window: ?from=&to= are passed to every report that takes them,
// ?refresh=<seconds> how often the page reads them again (30 by default, at least 5).
"use strict";

const TOKEN_KEY = "ordermesh.dashboard.token";
const SVG = "http://www.w3.org/2000/svg";
const FUNNEL_STAGES = ["placed", "confirmed", "shipped", "delivered", "completed"];

const query = new URLSearchParams(window.location.search);
const settings = {
  from: query.get("from"),
  to: query.get("to"),
  refreshSeconds: Math.max(5, Number(query.get("refresh")) || 30),
  top: Number(query.get("top")) || 10,
};

// --- exact decimal sums: money arrives as decimal strings and is never a float here ---------

function parseDecimal(text) {
  const match = /^(-?)(\d+)(?:\.(\d+))?$/.exec(String(text ?? "0").trim());
  if (!match) throw new Error(`not a decimal: ${text}`);
  const fraction = match[3] || "";
  const units = BigInt(match[2] + fraction) * (match[1] ? -1n : 1n);
  return { units, scale: fraction.length };
}

function formatDecimal(units, scale) {
  const negative = units < 0n;
  const digits = (negative ? -units : units).toString().padStart(scale + 1, "0");
  const whole = scale ? digits.slice(0, -scale) : digits;
  const text = scale ? `${whole}.${digits.slice(-scale)}` : whole;
  return negative ? `-${text}` : text;
}

function sumDecimals(values) {
  const parsed = values.map(parseDecimal);
  const scale = Math.max(2, ...parsed.map((p) => p.scale));
  const units = parsed.reduce((sum, p) => sum + p.units * 10n ** BigInt(scale - p.scale), 0n);
  return formatDecimal(units, scale);
}

// Charts need a length, not an amount: a float is fine for drawing, never for the figures.
const magnitude = (text) => Number(text) || 0;

// --- the reports, as the API answers them ---------------------------------------------------

// Counts are integers: a plain sum is exact.
const total = (rows, field) => String(rows.reduce((sum, row) => sum + Number(row[field] || 0), 0));

function keyText(key) {
  if (key === null || key === undefined) return "(none)";
  if (typeof key === "object") return Object.values(key).join(" / ");
  return String(key);
}

function byCurrency(rows, amountField) {
  const amounts = new Map();
  for (const row of rows) {
    const currency = row.currency || "";
    amounts.set(currency, [...(amounts.get(currency) || []), row[amountField]]);
  }
  return [...amounts]
    .sort(([one], [other]) => one.localeCompare(other))
    .map(([currency, values]) => ({ currency, amount: sumDecimals(values) }));
}

function moneyText(amounts) {
  if (!amounts.length) return "0.00";
  return amounts.map(({ currency, amount }) => (currency ? `${amount} ${currency}` : amount)).join(" · ");
}

// --- talking to the API ---------------------------------------------------------------------

class SignedOut extends Error {}

async function report(path, parameters = {}) {
  const url = new URL(path, document.baseURI);
  for (const [name, value] of Object.entries(parameters)) {
    if (value !== null && value !== undefined && value !== "") url.searchParams.set(name, value);
  }
  const response = await fetch(url, {
    headers: { Authorization: `Bearer ${sessionStorage.getItem(TOKEN_KEY)}`, Accept: "application/json" },
    cache: "no-store",
  });
  if (response.status === 401) throw new SignedOut("the token was not accepted (expired?): sign in again");
  if (!response.ok) {
    const problem = await response.json().catch(() => ({}));
    throw new Error(`${url.pathname}: ${response.status} ${problem.detail || problem.title || ""}`.trim());
  }
  return response.json();
}

// --- drawing ----------------------------------------------------------------------------------

function svgElement(name, attributes = {}, text = null) {
  const element = document.createElementNS(SVG, name);
  for (const [attribute, value] of Object.entries(attributes)) element.setAttribute(attribute, value);
  if (text !== null) element.textContent = text;
  return element;
}

function emptyChart(container, width, height) {
  const svg = svgElement("svg", { viewBox: `0 0 ${width} ${height}`, role: "img" });
  container.replaceChildren(svg);
  return svg;
}

// Columns over time: one per item, its value printed above it.
function columnChart(container, items, { alt = false, metric = null } = {}) {
  const width = 560, height = 180, bottom = 24, top = 16;
  const svg = emptyChart(container, width, height);
  if (!items.length) {
    svg.append(svgElement("text", { x: width / 2, y: height / 2, "text-anchor": "middle", class: "empty" }, "no data"));
    return;
  }
  const highest = Math.max(...items.map((item) => item.size), 1e-9);
  const slot = width / items.length;
  const barWidth = Math.max(2, Math.min(48, slot * 0.7));
  svg.append(svgElement("line", { x1: 0, x2: width, y1: height - bottom, y2: height - bottom, class: "axis" }));
  items.forEach((item, index) => {
    const barHeight = ((height - bottom - top) * item.size) / highest;
    const x = index * slot + (slot - barWidth) / 2;
    const y = height - bottom - barHeight;
    const bar = svgElement("rect", { x, y, width: barWidth, height: barHeight, class: alt ? "bar alt" : "bar" });
    bar.append(svgElement("title", {}, `${item.label}: ${item.text}`));
    const value = svgElement("text", { x: x + barWidth / 2, y: y - 3, "text-anchor": "middle" }, item.text);
    if (metric) value.setAttribute("data-metric", `${metric}.${item.label}`);
    svg.append(bar, value);
    // Label every column while they fit, else about eight of them.
    if (items.length <= 12 || index % Math.ceil(items.length / 8) === 0) {
      svg.append(svgElement("text", { x: x + barWidth / 2, y: height - 8, "text-anchor": "middle" }, item.label));
    }
  });
}

// Horizontal bars, one per row: label, bar, and the figures as text (each with its data-metric).
function barChart(container, items, { labelWidth = 150 } = {}) {
  const row = 26, width = 560;
  const svg = emptyChart(container, width, Math.max(row, items.length * row) + 4);
  if (!items.length) {
    svg.append(svgElement("text", { x: width / 2, y: row / 2 + 4, "text-anchor": "middle", class: "empty" }, "no data"));
    return;
  }
  const textWidth = 170;
  const room = width - labelWidth - textWidth;
  const highest = Math.max(...items.map((item) => item.size), 1e-9);
  items.forEach((item, index) => {
    const y = index * row + 4;
    const label = svgElement("text", { x: 0, y: y + 15 }, item.label);
    if (item.labelMetric) label.setAttribute("data-metric", item.labelMetric);
    svg.append(label);
    const bar = svgElement("rect", {
      x: labelWidth, y, height: row - 8, width: Math.max(1, (room * item.size) / highest),
      class: item.warn ? "bar warn" : "bar",
    });
    bar.append(svgElement("title", {}, item.label));
    svg.append(bar);
    let x = labelWidth + room + 8;
    for (const [metric, text] of item.figures) {
      const figure = svgElement("text", { x, y: y + 15, "data-metric": metric }, text);
      svg.append(figure);
      x += 8 + 7 * text.length;
    }
  });
}

function setMetric(name, text) {
  for (const element of document.querySelectorAll(`[data-metric="${name}"]`)) element.textContent = text;
}

function fillTable(table, rows) {
  table.tBodies[0].replaceChildren(
    ...rows.map((cells) => {
      const tr = document.createElement("tr");
      for (const [text, metric] of cells) {
        const td = document.createElement("td");
        td.textContent = text;
        if (metric) td.dataset.metric = metric;
        tr.append(td);
      }
      return tr;
    }),
  );
}

// --- the panels -----------------------------------------------------------------------------

function drawOrders(document_) {
  const rows = document_.rows;
  setMetric("orders.total", total(rows, "orders"));
  setMetric("orders.units", total(rows, "units"));
  setMetric("orders.gross", moneyText(byCurrency(rows, "gross_amount")));
  const days = [...new Set(rows.map((row) => keyText(row.key)))].sort();
  const onDay = (day) => rows.filter((row) => keyText(row.key) === day);
  columnChart(
    document.getElementById("chart-orders"),
    days.map((day) => {
      const orders = total(onDay(day), "orders");
      return { label: day, size: Number(orders), text: orders };
    }),
    { metric: "orders.day" },
  );
  // Amounts in different currencies do not add up: one revenue chart per currency.
  const revenue = document.getElementById("chart-revenue");
  const currencies = [...new Set(rows.map((row) => row.currency))].sort();
  revenue.replaceChildren();
  for (const currency of currencies.length ? currencies : [""]) {
    const chart = document.createElement("div");
    chart.dataset.currency = currency;
    revenue.append(chart);
    columnChart(
      chart,
      days.map((day) => {
        const amounts = onDay(day).filter((row) => row.currency === currency).map((row) => row.gross_amount);
        const gross = sumDecimals(amounts);
        return { label: day, size: magnitude(gross), text: gross };
      }),
      { alt: true, metric: `revenue.${currency}.day` },
    );
  }
}

// A rate ("0.5000") as a percentage ("50.00 %"): the decimal point moved, not a float rounded.
function percentText(rate) {
  if (rate === null || rate === undefined) return "–";
  const { units, scale } = parseDecimal(rate);
  return `${formatDecimal(units, Math.max(0, scale - 2))} %`;
}

function durationText(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  const value = Number(seconds);
  if (value < 120) return `${value.toFixed(1)} s`;
  if (value < 7200) return `${(value / 60).toFixed(1)} min`;
  if (value < 172800) return `${(value / 3600).toFixed(1)} h`;
  return `${(value / 86400).toFixed(1)} d`;
}

function drawFunnel(document_) {
  const steps = FUNNEL_STAGES.map((stage) => document_.rows.find((row) => row.stage === stage) || { stage, orders: 0 });
  barChart(
    document.getElementById("chart-funnel"),
    steps.map((step) => ({
      label: step.stage,
      size: Number(step.orders),
      figures: [
        [`funnel.${step.stage}`, String(step.orders)],
        [`funnel.${step.stage}.conversion`, percentText(step.conversion_from_placed)],
      ],
    })),
    { labelWidth: 90 },
  );
  setMetric("funnel.cancelled", total(document_.cancellations, "orders"));
  setMetric("funnel.rejected", total(document_.rejections, "orders"));
  setMetric("funnel.needs_attention", String(document_.needs_attention));
  setMetric("funnel.confirmation.p50", durationText(document_.time_to_confirmation.p50_seconds));
  setMetric("funnel.delivery.p50", durationText(document_.time_to_delivery.p50_seconds));
}

const AGEING_BUCKETS = [
  ["overdue_0_30", "0-30 days"],
  ["overdue_31_60", "31-60 days"],
  ["overdue_61_90", "61-90 days"],
  ["overdue_over_90", "over 90 days"],
];

function drawPayments(document_) {
  const rows = document_.rows;
  fillTable(
    document.getElementById("payments-table"),
    rows.map((row) => {
      const cell = (field) => [row[field], `payments.${row.currency}.${field}`];
      return [[row.currency], cell("invoiced"), cell("collected"), cell("refunded"), cell("outstanding")];
    }),
  );
  barChart(
    document.getElementById("chart-ageing"),
    rows.flatMap((row) =>
      AGEING_BUCKETS.map(([field, label]) => ({
        label: rows.length > 1 ? `${label} (${row.currency})` : label,
        size: magnitude(row[field]),
        warn: true,
        figures: [[`payments.${row.currency}.${field}`, `${row[field]} ${row.currency}`]],
      })),
    ),
    { labelWidth: 130 },
  );
}

function drawStockOuts(document_) {
  // In a warehouse: out of stock now, or ran out during the period. Backorders (no warehouse)
  // are stock missing everywhere.
  const rows = document_.rows.filter((row) => Number(row.stock_outs) > 0 || Number(row.available) <= 0);
  setMetric("stock.outs", total(document_.rows, "stock_outs"));
  setMetric("stock.out_now", String(document_.rows.filter((row) => row.warehouse && Number(row.available) <= 0).length));
  setMetric("stock.backordered", total(document_.rows, "backordered"));
  fillTable(
    document.getElementById("stock-outs-table"),
    rows.map((row) => {
      const at = `${row.sku}.${row.warehouse ?? "backorders"}`;
      return [
        [row.sku],
        [row.warehouse ?? "(backorders)"],
        [String(row.available), `stock.${at}.available`],
        [String(row.stock_outs), `stock.${at}.stock_outs`],
        [String(row.backordered), `stock.${at}.backordered`],
      ];
    }),
  );
}

function drawTopProducts(document_) {
  barChart(
    document.getElementById("chart-top-products"),
    document_.rows.map((row, index) => ({
      label: row.key,
      labelMetric: `top.${index}.key`,
      size: magnitude(row.revenue),
      figures: [
        [`top.${index}.units`, `${row.units} units`],
        [`top.${index}.revenue`, `${row.revenue} ${row.currency}`],
      ],
    })),
  );
}

// --- the page's life ----------------------------------------------------------------------

let timer = null;
let refreshes = 0;

function showProblem(message) {
  const problem = document.getElementById("problem");
  problem.textContent = message;
  problem.hidden = !message;
}

function signedOut(message = "") {
  clearTimeout(timer);
  sessionStorage.removeItem(TOKEN_KEY);
  document.body.dataset.state = "signed-out";
  document.getElementById("panels").hidden = true;
  document.getElementById("sign-out").hidden = true;
  document.getElementById("sign-in").hidden = false;
  showProblem(message);
}

async function refresh() {
  clearTimeout(timer);
  const window_ = { from: settings.from, to: settings.to };
  try {
    const [orders, funnel, payments, inventory, ranking] = await Promise.all([
      report("reports/orders", { group_by: "day", ...window_ }),
      report("reports/fulfilment", window_),
      report("reports/payments", window_),
      report("reports/inventory", window_),
      report("reports/sales/ranking", { by: "product", top: settings.top, ...window_ }),
    ]);
    drawOrders(orders);
    drawFunnel(funnel);
    drawPayments(payments);
    drawStockOuts(inventory);
    drawTopProducts(ranking);
    refreshes += 1;
    document.getElementById("refreshed-at").textContent = new Date().toLocaleTimeString();
    document.body.dataset.refreshes = String(refreshes);
    document.body.dataset.state = "ready";
    document.getElementById("panels").hidden = false;
    showProblem("");
  } catch (error) {
    if (error instanceof SignedOut) return signedOut(error.message);
    // The figures of the last good read stay on the page, under the problem.
    document.body.dataset.state = "error";
    showProblem(`Could not read the reports: ${error.message}`);
  }
  timer = setTimeout(refresh, settings.refreshSeconds * 1000);
}

function signedIn(token) {
  sessionStorage.setItem(TOKEN_KEY, token);
  document.getElementById("sign-in").hidden = true;
  document.getElementById("sign-out").hidden = false;
  document.body.dataset.state = "loading";
  refresh();
}

function start() {
  const range = settings.from || settings.to ? `${settings.from || "…"} to ${settings.to || "now"}` : "all time";
  document.getElementById("window").textContent = range;
  document.getElementById("refresh-every").textContent = String(settings.refreshSeconds);
  document.getElementById("sign-in").addEventListener("submit", (event) => {
    event.preventDefault();
    signedIn(document.getElementById("token").value.trim());
  });
  document.getElementById("sign-out").addEventListener("click", () => signedOut());
  // A token in the fragment is taken and then removed from the address bar and history.
  const fragment = new URLSearchParams(window.location.hash.slice(1));
  if (fragment.get("token")) {
    sessionStorage.setItem(TOKEN_KEY, fragment.get("token"));
    history.replaceState(null, "", window.location.pathname + window.location.search);
  }
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) signedIn(token);
  else signedOut();
}

start();
