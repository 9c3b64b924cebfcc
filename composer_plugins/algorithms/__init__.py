"""Composer algorithms of this recipe (registered in llm-foundry's ``algorithms`` registry)."""
