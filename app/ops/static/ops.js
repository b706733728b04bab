// Reload the page every `data-refresh` seconds (0: never), unless the operator is typing in a
// form: the page is rendered on the server, so a reload is the whole update.
(() => {
  const seconds = Number(document.body.dataset.refresh || 0);
  if (!seconds) return;
  setInterval(() => {
    const field = document.activeElement;
    if (field && field.matches("input, select, textarea")) return;
    location.reload();
  }, seconds * 1000);
})();
