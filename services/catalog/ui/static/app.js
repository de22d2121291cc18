// Progressive enhancement only: every action also works as a plain form without this file.
(function () {
  "use strict";
  var typing = function (el) { return el && (el.tagName === "INPUT" || el.tagName === "TEXTAREA" || el.tagName === "SELECT" || el.isContentEditable); };
  var table = document.getElementById("queue");
  var rows = table ? Array.prototype.slice.call(table.tBodies[0].rows) : [];
  var at = -1;
  function focusRow(i) {
    if (!rows.length) return;
    at = Math.max(0, Math.min(rows.length - 1, i));
    rows.forEach(function (r, j) { r.classList.toggle("current", j === at); });
    rows[at].focus();
  }
  function quick(decision) {
    var row = rows[at]; var form = document.getElementById("quick");
    if (!row || !form) return;
    form.action = "/ui/matches/" + encodeURIComponent(row.getAttribute("data-id")) + "/decision";
    form.elements.decision.value = decision;
    form.submit();
  }
  function click(id) { var el = document.getElementById(id); if (el) el.click(); }
  document.addEventListener("keydown", function (e) {
    if (e.ctrlKey || e.metaKey || e.altKey || typing(e.target)) return;
    var k = e.key;
    if (rows.length) {
      if (k === "j") { focusRow(at + 1); e.preventDefault(); }
      else if (k === "k") { focusRow(at - 1); e.preventDefault(); }
      else if ((k === "o" || k === "Enter") && at >= 0) { location.href = rows[at].getAttribute("data-href"); e.preventDefault(); }
      else if (k === "a" && at >= 0) { quick("approve"); e.preventDefault(); }
      else if (k === "r" && at >= 0) { quick("reject"); e.preventDefault(); }
      else if (k === "x" && at >= 0) { var c = rows[at].querySelector("input[type=checkbox]"); c.checked = !c.checked; e.preventDefault(); }
    } else if (document.getElementById("decision")) {
      if (k === "a") { click("approve"); e.preventDefault(); }
      else if (k === "r") { click("reject"); e.preventDefault(); }
      else if (k === "j") { click("next"); e.preventDefault(); }
      else if (k === "k") { click("prev"); e.preventDefault(); }
      else if (k === "u") { click("back"); e.preventDefault(); }
    }
  });
  var all = document.getElementById("select-all");
  if (all && rows.length) {  // without JavaScript each row is ticked by hand
    all.hidden = false;
    all.addEventListener("change", function () { rows.forEach(function (r) { r.querySelector("input[type=checkbox]").checked = all.checked; }); });
  }
  if (rows.length) { rows.forEach(function (r, i) { r.addEventListener("click", function () { at = i; rows.forEach(function (x, j) { x.classList.toggle("current", j === i); }); }); }); }
  var imp = document.getElementById("import-form");
  if (imp && window.FormData && window.XMLHttpRequest) {
    imp.addEventListener("submit", function (e) {
      e.preventDefault();
      var bar = document.getElementById("progress"); var out = document.getElementById("import-result");
      var xhr = new XMLHttpRequest();
      xhr.open("POST", imp.action);
      xhr.setRequestHeader("X-Requested-With", "fetch");
      bar.hidden = false; bar.value = 0;
      xhr.upload.onprogress = function (ev) { if (ev.lengthComputable) bar.value = Math.round(ev.loaded * 100 / ev.total); };
      xhr.onload = function () { bar.value = 100; out.innerHTML = xhr.responseText; };
      xhr.onerror = function () { imp.submit(); };
      xhr.send(new FormData(imp));
    });
  }
})();
