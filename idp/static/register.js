// "Add another student" on /register: clones the last row with the next index.
// The page works without this script: it always renders at least two rows.
(function () {
  "use strict";
  var script = document.currentScript;
  var button = document.getElementById("add-student");
  var fieldset = document.getElementById("students");
  if (!button || !fieldset) { return; }
  var maxRows = parseInt((script && script.getAttribute("data-max-rows")) || "10", 10);
  button.hidden = false;
  button.addEventListener("click", function () {
    var rows = fieldset.querySelectorAll(".student-row");
    if (rows.length >= maxRows) { return; }
    var last = rows[rows.length - 1];
    var next = parseInt(last.getAttribute("data-row"), 10) + 1;
    var copy = last.cloneNode(true);
    copy.setAttribute("data-row", String(next));
    copy.querySelectorAll("[id],[name],[for]").forEach(function (el) {
      ["id", "name", "for"].forEach(function (attr) {
        var value = el.getAttribute(attr);
        if (value) { el.setAttribute(attr, value.replace(/^students-\d+-/, "students-" + next + "-")); }
      });
    });
    copy.querySelectorAll("input").forEach(function (input) { input.value = ""; });
    copy.querySelectorAll("select").forEach(function (select) { select.selectedIndex = 0; });
    copy.querySelectorAll(".row-error").forEach(function (el) { el.remove(); });
    var title = copy.querySelector(".row-title");
    if (title) { title.textContent = title.textContent.replace(/\d+/, String(rows.length + 1)); }
    last.after(copy);
    if (rows.length + 1 >= maxRows) { button.hidden = true; }
  });
})();
