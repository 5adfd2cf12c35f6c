"""The uWSGI vassal's module (module = blog:application)."""
import show

application = show.make("blog")
