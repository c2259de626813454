/* simflow portal: SIM selection ("select all" and the selected count). No inline script, CSP-friendly.
   Works on any form#sim-selection, including after htmx swaps it in. */
(function () {
  "use strict";

  function rows(form) {
    return Array.prototype.slice.call(form.querySelectorAll('input[type="checkbox"][name="iccid"]'));
  }

  function label(count) {
    if (count === 0) return "Aucune SIM sélectionnée";
    if (count === 1) return "1 SIM sélectionnée";
    return count + " SIM sélectionnées";
  }

  function refresh(form) {
    var boxes = rows(form);
    var checked = boxes.filter(function (box) { return box.checked; }).length;
    var counter = form.querySelector("#selection-count");
    if (counter) counter.textContent = label(checked);
    form.dataset.selected = String(checked);
    var all = form.querySelector("[data-select-all]");
    if (all) {
      all.checked = boxes.length > 0 && checked === boxes.length;
      all.indeterminate = checked > 0 && checked < boxes.length;
    }
    form.querySelectorAll("[data-needs-selection]").forEach(function (button) {
      button.disabled = checked === 0;
    });
    boxes.forEach(function (box) {
      var row = box.closest("tr");
      if (row) row.classList.toggle("selected", box.checked);
    });
  }

  function refreshAll() {
    document.querySelectorAll("form#sim-selection").forEach(refresh);
  }

  document.addEventListener("change", function (event) {
    var target = event.target;
    if (!(target instanceof HTMLInputElement) || target.type !== "checkbox") return;
    var form = target.closest("form#sim-selection");
    if (!form) return;
    if (target.hasAttribute("data-select-all")) {
      rows(form).forEach(function (box) { box.checked = target.checked; });
    }
    refresh(form);
  });

  document.addEventListener("DOMContentLoaded", refreshAll);
  document.addEventListener("htmx:afterSettle", refreshAll);
})();

/* The column chooser is a floating panel: a click elsewhere closes it. */
document.addEventListener("click", function (event) {
  var chooser = document.getElementById("column-chooser");
  if (chooser && chooser.open && event.target instanceof Node && !chooser.contains(event.target)) {
    chooser.open = false;
  }
});

/* Password reset: the mail's link carries the code in the fragment (#token=…), which no server ever receives;
   it is copied into the form, then removed from the address bar. */
document.addEventListener("DOMContentLoaded", function () {
  var field = document.querySelector("input[data-token-from-fragment]");
  var match = /(?:^#|&)token=([^&]+)/.exec(window.location.hash);
  if (field && match) {
    field.value = decodeURIComponent(match[1]);
    history.replaceState(null, "", window.location.pathname + window.location.search);
  }
});
