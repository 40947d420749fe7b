"""Packaging from settings.ini (the single place dependencies and console scripts are declared).

pyproject.toml (written by nbdev) marks these fields as dynamic; every one of them is supplied here."""
from configparser import ConfigParser
from pathlib import Path
import setuptools

cfg = ConfigParser(delimiters=['='])
cfg.read('settings.ini', encoding='utf-8')
c = cfg['DEFAULT']

setuptools.setup(
    name=c['lib_name'], version=c['version'], description=c['description'],
    keywords=c['keywords'].split(), author=c['author'], author_email=c['author_email'], license=c['license'],
    url=c['git_url'], project_urls={'Source': c['git_url'], 'Documentation': c['doc_host'] + c['doc_baseurl']},
    long_description=Path('README.md').read_text(encoding='utf-8'), long_description_content_type='text/markdown',
    classifiers=['Programming Language :: Python :: 3', 'Topic :: Scientific/Engineering :: Artificial Intelligence'],
    python_requires='>=' + c['min_python'],
    packages=setuptools.find_packages(include=[c['lib_name'], c['lib_name'] + '.*']),
    include_package_data=True,
    install_requires=c['requirements'].split(),
    extras_require={'dev': c['dev_requirements'].split()},
    entry_points={'console_scripts': c['console_scripts'].split(),
                  'nbdev': [f"{c['lib_path']}={c['lib_path']}._modidx:d"]},
    zip_safe=False,
)
