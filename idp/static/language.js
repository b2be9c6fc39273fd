// The language selector applies the choice at once; without this script its button does.
(function () {
  "use strict";
  var select = document.getElementById("lang");
  var button = document.getElementById("lang-apply");
  if (!select || !button) { return; }
  button.hidden = true;
  select.addEventListener("change", function () { select.form.submit(); });
})();
