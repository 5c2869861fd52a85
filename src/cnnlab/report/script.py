"""The report's behaviour in the browser, as one script that works on one report container.

It redraws the diagram tree of ``diagram.tree`` with the same layout rules as ``diagram.render``
when a block is collapsed or expanded, links the diagram and the table both ways (hover previews,
click selects and shows the layer's arithmetic and findings), sorts and filters the table, and zooms
and pans the diagram. Everything it reads sits inside its container, so several reports can share a
page (a notebook) without their ids or styles meeting. Text is inserted as text, or escaped."""

from __future__ import annotations

JS = r"""
(function (root) {
  "use strict";
  var D = JSON.parse(root.querySelector("script.cl-data").textContent);
  var BW = 230, BH = 34, GAP = 12, PAD = 16, M = root.id + "-a";
  var COL = {conv: "#dbeafe", dense: "#fde68a", pool: "#dcfce7", other: "#f3f4f6", block: "#ede9fe"};
  var shut = new Set(D.collapsed), svg = root.querySelector(".cl-dg svg"), dg = root.querySelector(".cl-dg");
  var tbody = root.querySelector(".cl-tw tbody"), det = root.querySelector(".cl-det");
  var rows = [], rowBox = {}, hov = null, sel = null, zoom = 1, nat = [+svg.getAttribute("width"), +svg.getAttribute("height")];
  tbody.querySelectorAll("tr").forEach(function (tr) { rows[+tr.getAttribute("data-i")] = tr; });

  function esc(s) {
    return String(s).replace(/[&<>"']/g, function (c) {
      return {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c];
    });
  }
  function B(w, h, s) { return {w: w, h: h, s: s}; }
  function at(b, x, y) { return '<g transform="translate(' + x + "," + y + ')">' + b.s + "</g>"; }
  function arrow(x1, y1, x2, y2) {
    return '<path d="M' + x1 + "," + y1 + " L" + x2 + "," + y2 + '" class="e" marker-end="url(#' + M + ')"/>';
  }
  function leaf(title, sub, kind, tags, attrs) {
    var tag = tags.length ? " \u00b7 " + tags.join(", ") : "";
    return B(BW, BH, (attrs ? "<g" + attrs + ">" : "") +
      '<rect width="' + BW + '" height="' + BH + '" rx="5" fill="' + (COL[kind] || COL.other) + '" stroke="#6b7280"/>' +
      '<text x="8" y="14" class="t">' + esc(title) + '<tspan class="d">' + esc(tag) + "</tspan></text>" +
      '<text x="8" y="28" class="d">' + esc(sub) + "</text>" + (attrs ? "</g>" : ""));
  }
  function stack(bs) {
    var w = 0, y = 0, s = "", i;
    if (!bs.length) return B(0, 0, "");
    for (i = 0; i < bs.length; i++) w = Math.max(w, bs[i].w);
    for (i = 0; i < bs.length; i++) {
      s += at(bs[i], Math.floor((w - bs[i].w) / 2), y);
      if (i) s += arrow(w / 2, y - GAP, w / 2, y);
      y += bs[i].h + GAP;
    }
    return B(w, y - GAP, s);
  }
  function span(a, b) { var r = []; for (var i = a; i < b; i++) r.push(i); return r.join(" "); }
  function box(t) {
    var cs, w, h, x, s;
    switch (t.t) {
      case "l":
        return leaf(t.title, t.sub, t.kind, t.tags, t.rows.length ? ' class="n" data-r="' + t.rows.join(" ") + '"' : "");
      case "s":
        return stack(t.items.map(box));
      case "w":
        cs = t.items.map(box); w = GAP * (cs.length - 1); h = 0; x = 0; s = "";
        cs.forEach(function (c) { w += c.w; h = Math.max(h, c.h); });
        cs.forEach(function (c) { s += at(c, x, 0); x += c.w + GAP; });
        return B(w, h, s);
      case "c":
        cs = t.cols.map(function (c) { return [c[0], box(c[1])]; }); w = GAP * (cs.length - 1); h = 0; x = 0; s = "";
        cs.forEach(function (c) { w += c[1].w; h = Math.max(h, c[1].h); });
        h += 14;
        cs.forEach(function (c) {
          s += '<text x="' + (x + c[1].w / 2) + '" y="9" class="d" text-anchor="middle">' + esc(c[0]) + "</text>";
          s += at(c[1], x, 14) + arrow(x + c[1].w / 2, c[1].h + 14, w / 2, h + 2 * GAP);
          x += c[1].w + GAP;
        });
        s += '<text x="' + w / 2 + '" y="' + (h + 2 * GAP + 10) + '" class="d" text-anchor="middle">' + esc(t.text) + "</text>";
        return B(w, h + 2 * GAP + 10, s);
      case "r":
        var body = box(t.body), sc = t.sc ? box(t.sc) : null;
        w = body.w + GAP + (sc ? sc.w : 30);
        s = at(body, 0, 0) + (sc ? at(sc, body.w + GAP, Math.floor((body.h - sc.h) / 2))
                                 : '<path d="M' + (w - 15) + ",0 L" + (w - 15) + "," + body.h + '" class="e s"/>');
        s += '<text x="' + body.w / 2 + '" y="' + (body.h + 2 * GAP + 8) + '" class="t" text-anchor="middle">' + esc(t.plus) + "</text>";
        return B(w, body.h + 2 * GAP + 10, s);
    }
    var data = t.id ? ' data-b="' + esc(t.id) + '"' : "";
    if (t.id && shut.has(t.id))
      return leaf("\u25b8 " + t.title, t.sum, "block", [], ' class="n b" data-r="' + span(t.rows[0], t.rows[1]) + '"' + data);
    var inner = box(t.inner);
    w = inner.w + 2 * PAD; h = inner.h + 2 * PAD + 14;
    s = '<rect width="' + w + '" height="' + h + '" rx="8" class="f"/>';
    s += t.id ? '<g class="tg"' + data + '><rect width="' + w + '" height="18" fill="transparent"/>' +
                '<text x="8" y="13" class="d">\u25be ' + esc(t.title) + "</text></g>"
              : '<text x="8" y="13" class="d">' + esc(t.title) + "</text>";
    return B(w, h, s + at(inner, PAD, PAD + 14));
  }

  function index() {
    rowBox = {};
    svg.querySelectorAll(".n").forEach(function (n) {
      n.getAttribute("data-r").split(" ").forEach(function (i) { rowBox[i] = n; });
    });
  }
  function size() {
    svg.setAttribute("width", Math.round(nat[0] * zoom));
    svg.setAttribute("height", Math.round(nat[1] * zoom));
    root.querySelector(".cl-zoom").textContent = Math.round(zoom * 100) + "%";
  }
  function draw() {
    var b = box(D.tree);
    nat = [b.w + 2 * PAD, b.h + 2 * PAD];
    svg.setAttribute("viewBox", "0 0 " + nat[0] + " " + nat[1]);
    svg.querySelector("g.root").innerHTML = at(b, PAD, PAD);
    size(); index(); mark();
  }
  function mark() {
    root.querySelectorAll(".hl, .sel").forEach(function (e) { e.classList.remove("hl", "sel"); });
    if (hov !== null) { rows[hov].classList.add("hl"); if (rowBox[hov]) rowBox[hov].classList.add("hl"); }
    if (sel !== null) { rows[sel].classList.add("sel"); if (rowBox[sel]) rowBox[sel].classList.add("sel"); }
    show(hov !== null ? hov : sel);
  }
  function show(i) {
    det.textContent = "";
    if (i === null) { det.textContent = "Hover over or select a layer, in the diagram or the table, to see its arithmetic."; return; }
    var L = D.layers[i], k = D.k[i], head = document.createElement("div"), b = document.createElement("b");
    b.textContent = L.n; head.appendChild(b);
    head.appendChild(document.createTextNode(" " + L.ty + " \u00b7 " + L.io + " \u00b7 " + k[1].toLocaleString("en") +
      " params \u00b7 " + k[3].toLocaleString("en") + " MACs"));
    det.appendChild(head);
    var pre = document.createElement("pre");
    pre.className = "cl-notes";
    pre.textContent = L.notes.length ? L.notes.join("\n") : "(no arithmetic: the layer keeps its input's shape and has no weights)";
    det.appendChild(pre);
    if (L.f.length) {
      var ul = document.createElement("ul");
      ul.className = "cl-find";
      L.f.forEach(function (f) { var li = document.createElement("li"); li.textContent = f; ul.appendChild(li); });
      det.appendChild(ul);
    }
  }
  function reveal(i) {
    var opened = false;
    D.frames.forEach(function (f) { if (f[1] <= i && i < f[2] && shut.delete(f[0])) opened = true; });
    if (opened) draw();
  }
  function select(i, fromTable) {
    sel = i; hov = null;
    if (fromTable) reveal(i);
    mark();
    var target = fromTable ? rowBox[i] : rows[i];
    if (target && target.scrollIntoView) target.scrollIntoView({block: "nearest", inline: "nearest"});
  }
  function toggle(id) { if (!shut.delete(id)) shut.add(id); draw(); }

  svg.addEventListener("click", function (e) {
    var t = e.target.closest(".tg, .n");
    if (!t) return;
    if (t.classList.contains("tg") || t.classList.contains("b")) return toggle(t.getAttribute("data-b"));
    select(+t.getAttribute("data-r").split(" ")[0], false);
  });
  svg.addEventListener("mouseover", function (e) {
    var t = e.target.closest(".n");
    var i = t && !t.classList.contains("b") ? +t.getAttribute("data-r").split(" ")[0] : null;
    if (i !== hov) { hov = i; mark(); }
  });
  svg.addEventListener("mouseleave", function () { hov = null; mark(); });
  tbody.addEventListener("click", function (e) { var tr = e.target.closest("tr"); if (tr) select(+tr.getAttribute("data-i"), true); });
  tbody.addEventListener("mouseover", function (e) {
    var tr = e.target.closest("tr"), i = tr ? +tr.getAttribute("data-i") : null;
    if (i !== hov) { hov = i; mark(); }
  });
  tbody.addEventListener("mouseleave", function () { hov = null; mark(); });

  var sortCol = null, sortDir = 1;
  function key(i, c) { return c === 0 ? i : c === 1 ? D.layers[i].ty : D.k[i][Math.max(c - 3, 0)]; }
  root.querySelectorAll(".cl-tw thead th").forEach(function (th, c) {
    th.addEventListener("click", function () {
      sortDir = sortCol === c ? -sortDir : (c <= 1 ? 1 : -1);
      sortCol = c;
      root.querySelectorAll(".cl-tw thead th").forEach(function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", sortDir > 0 ? "ascending" : "descending");
      var order = Object.keys(rows).map(Number);
      order.sort(function (a, b) {
        var x = key(a, c), y = key(b, c);
        return (x < y ? -1 : x > y ? 1 : a - b) * sortDir;
      });
      order.forEach(function (i) { tbody.appendChild(rows[i]); });
    });
  });
  var q = root.querySelector(".cl-q"), fo = root.querySelector(".cl-fo"), shown = root.querySelector(".cl-shown");
  function filter() {
    var s = q.value.trim().toLowerCase(), n = 0;
    rows.forEach(function (tr, i) {
      var L = D.layers[i], ok = (!s || (L.n + " " + L.ty).toLowerCase().indexOf(s) >= 0) && (!fo.checked || L.f.length > 0);
      tr.style.display = ok ? "" : "none";
      if (ok) n++;
    });
    shown.textContent = n + " of " + rows.length + " layers";
  }
  q.addEventListener("input", filter);
  fo.addEventListener("change", filter);

  function setZoom(z, cx, cy) {
    z = Math.min(4, Math.max(0.05, z));
    cx = cx === undefined ? dg.clientWidth / 2 : cx; cy = cy === undefined ? dg.clientHeight / 2 : cy;
    var fx = (dg.scrollLeft + cx) / zoom, fy = (dg.scrollTop + cy) / zoom;
    zoom = z; size();
    dg.scrollLeft = fx * zoom - cx; dg.scrollTop = fy * zoom - cy;
  }
  root.querySelector(".cl-ctl").addEventListener("click", function (e) {
    var a = e.target.getAttribute && e.target.getAttribute("data-a");
    if (a === "in") setZoom(zoom * 1.25);
    else if (a === "out") setZoom(zoom / 1.25);
    else if (a === "fit") setZoom(Math.min(1, (dg.clientWidth - 16) / nat[0]));
    else if (a === "expand") { shut.clear(); draw(); }
    else if (a === "collapse") { D.frames.forEach(function (f) { shut.add(f[0]); }); draw(); }
  });
  dg.addEventListener("wheel", function (e) {
    if (!(e.ctrlKey || e.metaKey)) return;
    e.preventDefault();
    var r = dg.getBoundingClientRect();
    setZoom(zoom * (e.deltaY < 0 ? 1.1 : 1 / 1.1), e.clientX - r.left, e.clientY - r.top);
  }, {passive: false});
  var drag = null;
  dg.addEventListener("pointerdown", function (e) {
    if (e.button !== 0 || e.target.closest(".n, .tg")) return;
    drag = [e.clientX, e.clientY, dg.scrollLeft, dg.scrollTop];
    dg.classList.add("cl-drag");
  });
  window.addEventListener("pointermove", function (e) {
    if (!drag) return;
    dg.scrollLeft = drag[2] - (e.clientX - drag[0]);
    dg.scrollTop = drag[3] - (e.clientY - drag[1]);
  });
  window.addEventListener("pointerup", function () { drag = null; dg.classList.remove("cl-drag"); });

  index(); size(); filter(); show(null);
  root.setAttribute("data-ready", "1");
})
"""
