// Swagger UI on this service's schema. A file of its own, not an inline script, so that the page's
// Content-Security-Policy allows scripts from this service only (service/http/routes/docs.py).
window.ui = SwaggerUIBundle({
  url: "openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  showExtensions: true,
  showCommonExtensions: true,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
  layout: "BaseLayout",
});
